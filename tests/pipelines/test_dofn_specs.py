"""Beam's DoFn state/timer inspection, memoised while memlake's jobs run."""

from __future__ import annotations

import functools
import pickle
from collections.abc import Iterator
from typing import Any

import apache_beam as beam
import pytest
from apache_beam.coders import VarIntCoder
from apache_beam.transforms import core, userstate

from pipelines.dofn_specs import memoised_dofn_specs

_BAG = userstate.BagStateSpec("seen", VarIntCoder())
_SEEN = beam.DoFn.StateParam(_BAG)


class _Stateless(beam.DoFn):
    def process(self, element: int) -> Iterator[int]:
        yield element


class _Stateful(beam.DoFn):
    def process(self, element: tuple[str, int], seen: Any = _SEEN) -> Iterator[int]:
        yield element[1]


def _double(x: int) -> int:
    return 2 * x


@pytest.fixture
def counted() -> Iterator[list[object]]:
    """Beam's own function, counting the DoFns it is asked about."""
    original = userstate.get_dofn_specs
    asked: list[object] = []

    def counting(dofn: Any) -> Any:
        asked.append(dofn)
        return original(dofn)

    userstate.get_dofn_specs = counting
    yield asked
    userstate.get_dofn_specs = original


def test_each_dofn_is_inspected_once_and_answers_as_beam_does(counted: list[object]) -> None:
    fresh = [
        _Stateless,
        _Stateful,
        lambda: core.CallableWrapperDoFn(_double),
        lambda: core.CallableWrapperDoFn(lambda x: x + 1),
    ]
    expected = [userstate.get_dofn_specs(make()) for make in fresh]
    assert expected[1] == ({_BAG}, set())  # the stateful one is seen as stateful
    counted.clear()
    with memoised_dofn_specs():
        for _ in range(3):
            # Unpickled again each time, as a re-run graph's DoFns are: new objects, new lambdas.
            got = [userstate.get_dofn_specs(pickle.loads(pickle.dumps(make()))) for make in fresh[:3]]
            got.append(userstate.get_dofn_specs(fresh[3]()))
            assert got == expected
            assert userstate.is_stateful_dofn(_Stateful())
            assert not userstate.is_stateful_dofn(_Stateless())
    assert len(counted) == 4  # once per DoFn, not once per call


def test_callables_with_other_parameters_are_inspected_apart(counted: list[object]) -> None:
    def make() -> list[Any]:
        return [
            core.CallableWrapperDoFn(lambda x: x),
            core.CallableWrapperDoFn(lambda x, seen=_SEEN: x),
            core.CallableWrapperDoFn(lambda x, scale=2: x * scale),
        ]

    expected = [userstate.get_dofn_specs(dofn) for dofn in make()]
    counted.clear()
    with memoised_dofn_specs():
        assert [userstate.get_dofn_specs(dofn) for dofn in make()] == expected
        assert [userstate.get_dofn_specs(dofn) for dofn in make()] == expected
    assert len(counted) == 3


def test_a_callable_without_a_stable_identity_is_asked_about_every_time(counted: list[object]) -> None:
    with memoised_dofn_specs():
        for _ in range(2):
            # A partial unpickled again is a new object: keyed by itself, the memo would only grow.
            userstate.get_dofn_specs(core.CallableWrapperDoFn(functools.partial(_double)))
    assert len(counted) == 2


def test_beam_s_function_comes_back_after_the_block_and_nested_blocks_share_one_memo(
    counted: list[object],
) -> None:
    with memoised_dofn_specs():
        inside = userstate.get_dofn_specs
        with memoised_dofn_specs():
            assert userstate.get_dofn_specs is inside
            userstate.get_dofn_specs(_Stateless())
        assert userstate.get_dofn_specs is inside
        userstate.get_dofn_specs(_Stateless())
    assert len(counted) == 1
    with pytest.raises(RuntimeError), memoised_dofn_specs():
        raise RuntimeError("a job failed")
    userstate.get_dofn_specs(_Stateless())
    assert len(counted) == 2  # Beam's own again: no memo
