from __future__ import annotations

from pathlib import Path

import pytest

from memlake.errors import StaleArtifactError
from training.artifacts import FileSystemArtifactStore
from training.base_model import BaseLLM, ModelFingerprint
from training.kv_cache import (
    build_prefix_cache,
    generate,
    load_prefix_cache,
    prompt_for,
    save_prefix_cache,
    staleness,
)
from training.prompts import encode_prompt
from training.selection import HotMemory

MEMORIES = (
    HotMemory("m1", 1, "Ada's locker code is 4417.", pinned=True),
    HotMemory("m2", 3, "The team offsite is in Lisbon on 14 May.", accesses=9),
    HotMemory("m3", 2, "Bruno prefers green tea over coffee.", accesses=4),
)


@pytest.mark.integration
def test_answers_with_and_without_the_cache_are_identical(base_llm: BaseLLM, tmp_path: Path) -> None:
    store = FileSystemArtifactStore(str(tmp_path / "artifacts"))
    cache = build_prefix_cache(base_llm, cube_id="team:alpha", memories=MEMORIES)
    ref = save_prefix_cache(cache, store)
    assert ref.base_model_fingerprint == base_llm.fingerprint_id
    assert ref.uri.startswith(str(tmp_path / "artifacts") + "/kv/team%3Aalpha/")
    loaded = load_prefix_cache(ref, store, base=base_llm)
    assert loaded.manifest.sources == tuple(m.ref for m in MEMORIES)

    answers = {}
    for question in ("Where is the team offsite?", "What is Ada's locker code?"):
        from_scratch = encode_prompt(
            base_llm.tokenizer, question=question, memories=[m.text for m in MEMORIES]
        )
        reused = prompt_for(loaded, base_llm.tokenizer, question=question)
        assert reused.ids == from_scratch.ids
        plain = generate(base_llm, from_scratch, max_new_tokens=12)
        cached = generate(base_llm, reused, prefix_cache=loaded, max_new_tokens=12)
        assert cached.token_ids == plain.token_ids
        assert cached.reused_tokens == len(loaded.prefix_ids) > 0
        assert plain.reused_tokens == 0
        answers[question] = cached.text
    # The stored tensors are untouched by the generations that used them.
    assert all(k.shape[-2] == len(loaded.prefix_ids) for k, _ in loaded.layers)
    assert "Lisbon" in answers["Where is the team offsite?"]


@pytest.mark.integration
def test_a_cache_for_another_model_or_changed_memory_is_stale(base_llm: BaseLLM, tmp_path: Path) -> None:
    cache = build_prefix_cache(base_llm, cube_id="c1", memories=MEMORIES[:1])
    manifest = cache.manifest
    live = {"m1": 1, "m2": 3}
    assert staleness(manifest, fingerprint=base_llm.fingerprint_id, live=live) is None
    assert "version 2" in (staleness(manifest, fingerprint=base_llm.fingerprint_id, live={"m1": 2}) or "")
    assert "no longer live" in (staleness(manifest, fingerprint=base_llm.fingerprint_id, live={}) or "")
    other = str(
        ModelFingerprint(
            base_llm.fingerprint.weights_sha256, base_llm.fingerprint.tokenizer_sha256, "bfloat16"
        )
    )
    assert "base model" in (staleness(manifest, fingerprint=other) or "")

    store = FileSystemArtifactStore(str(tmp_path))
    ref = save_prefix_cache(cache, store)
    from memlake.settings import ModelSettings
    from training.base_model import load_base_model

    bf16 = load_base_model(ModelSettings(), device="cpu", dtype="bfloat16")
    with pytest.raises(StaleArtifactError) as caught:
        load_prefix_cache(ref, store, base=bf16)
    assert caught.value.uri == ref.uri


@pytest.mark.integration
def test_a_prompt_with_another_prefix_is_refused(base_llm: BaseLLM) -> None:
    cache = build_prefix_cache(base_llm, cube_id="c1", memories=MEMORIES[:1])
    other = encode_prompt(base_llm.tokenizer, question="Hi?", memories=["Something else entirely."])
    with pytest.raises(StaleArtifactError):
        generate(base_llm, other, prefix_cache=cache, max_new_tokens=2)
