from __future__ import annotations

import pytest

from memlake.model import MemoryKind, MemoryStatus
from serving.filters import MemoryFilter, milvus_literal
from tests.serving.builders import T0, hours, memory


def test_default_filter_keeps_active_unexpired_memories_only() -> None:
    f = MemoryFilter()
    assert f.matches(memory("a"), now=T0)
    assert not f.matches(memory("b", status=MemoryStatus.ARCHIVED), now=T0)
    assert not f.matches(memory("c", expires_at=T0 - hours(1)), now=T0)
    assert MemoryFilter(statuses=frozenset({MemoryStatus.ARCHIVED})).matches(
        memory("b", status=MemoryStatus.ARCHIVED), now=T0
    )


@pytest.mark.parametrize("status", [MemoryStatus.DELETED, MemoryStatus.EXPIRED, MemoryStatus.ERASED])
def test_gone_memories_cannot_be_asked_for(status: MemoryStatus) -> None:
    with pytest.raises(ValueError, match="cannot be retrieved"):
        MemoryFilter(statuses=frozenset({status}))


def test_kind_tags_type_and_time() -> None:
    m = memory("a", tags=("work", "berlin"), memory_type="event", created_at=T0)
    assert MemoryFilter(kinds=frozenset({MemoryKind.PLAINTEXT})).matches(m, now=T0)
    assert not MemoryFilter(kinds=frozenset({MemoryKind.PARAMETRIC})).matches(m, now=T0)
    assert MemoryFilter(tags_any=frozenset({"berlin", "x"})).matches(m, now=T0)
    assert not MemoryFilter(tags_all=frozenset({"berlin", "x"})).matches(m, now=T0)
    assert MemoryFilter(memory_types=frozenset({"event"})).matches(m, now=T0)
    assert MemoryFilter(created_after=T0, created_before=T0 + hours(1)).matches(m, now=T0)
    assert not MemoryFilter(created_before=T0).matches(m, now=T0)


def test_milvus_expression_quotes_safely_and_skips_what_it_cannot_quote() -> None:
    f = MemoryFilter(tags_any=frozenset({"ok"}), kinds=frozenset({MemoryKind.PLAINTEXT}), created_after=T0)
    expr = f.milvus_expression(["c1", "c2"])
    assert 'cube_id in ["c1", "c2"]' in expr
    assert 'array_contains_any(tags, ["ok"])' in expr
    assert 'kind in ["plaintext"]' in expr
    assert f"created_at_ms >= {int(T0.timestamp() * 1000)}" in expr
    risky = MemoryFilter(tags_any=frozenset({'a"b'}))
    assert "tags" not in risky.milvus_expression(["c1"])
    assert milvus_literal('x"y') is None
    assert milvus_literal("x y") == '"x y"'
    assert milvus_literal("café") == '"café"'  # as written: Milvus knows no \\u escapes
    assert milvus_literal("lone \ud800") is None
