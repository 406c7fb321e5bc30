"""Beam's look at a DoFn's state and timer parameters, taken once per DoFn while memlake's jobs run.

Every bundle processor the DirectRunner builds (each stage of each run; a
follower builds about twenty a micro-batch) asks `userstate.get_dofn_specs`
for every DoFn's state and timer specs, and that calls `inspect.signature` on
every method of the DoFn, again for every batch. On a follower at 1,000
events/s this was 8.6% of its CPU (py-spy), 6.2% in `inspect` alone.

The answer depends only on the functions the DoFn's methods are bound to (and,
for a DoFn wrapping a callable, on that callable: Beam inspects it instead of
`process`), so it is kept per DoFn class, bound functions and wrapped callable.
A DoFn that Beam inspects some other way (an `_inspect_<method>` hook without a
wrapped callable) is asked afresh every time, as before.
"""

from __future__ import annotations

__all__ = ["memoised_dofn_specs"]

import types
from collections import OrderedDict
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

from apache_beam.transforms import userstate

from pipelines.swap import swapped

Specs = tuple[set[Any], set[Any]]
_MEMO_BOUND = 512  # DoFns remembered; a graph has a few dozen


def _key(dofn: Any) -> tuple[Any, ...] | None:
    methods = []
    for name in dir(dofn):
        value = getattr(dofn, name, None)
        if isinstance(value, types.MethodType):
            if hasattr(dofn, f"_inspect_{name}") and not hasattr(dofn, "_fn"):
                return None
            methods.append((name, value.__func__))
    wrapped = getattr(dofn, "_fn", None)
    callable_key = _callable_key(wrapped)
    if wrapped is not None and callable_key is None:
        return None
    key = (type(dofn), callable_key, tuple(methods))
    try:
        hash(key)
    except TypeError:
        return None
    return key


def _callable_key(fn: Any) -> Any:
    """What Beam's inspection of a wrapped callable depends on.

    A graph run again is unpickled again, and a lambda comes back as a new function
    object: its code, defaults and keyword defaults (what `inspect.signature` reads of
    a plain function) identify it across runs. Anything else (a partial, a callable
    object, a wrapped function) has no such identity: None, not memoised, since a key
    made of the object itself would be new every run and the memo would only grow.
    """
    fn = getattr(fn, "_argspec_fn", fn)  # what Beam inspects for Map, FlatMap and Filter
    plain = isinstance(fn, types.FunctionType)
    if not plain or hasattr(fn, "__wrapped__") or hasattr(fn, "__signature__"):
        return None
    return (fn.__code__, fn.__defaults__, tuple(sorted((fn.__kwdefaults__ or {}).items())))


def _memoised(original: Callable[[Any], Specs]) -> Callable[[Any], Specs]:
    memo: OrderedDict[tuple[Any, ...], Specs] = OrderedDict()

    def get_dofn_specs(dofn: Any) -> Specs:
        key = _key(dofn)
        if key is None:
            return original(dofn)
        found = memo.get(key)
        if found is None:
            found = memo[key] = original(dofn)
            # Bounded: a default value unpickled anew each run (hashed by identity) makes a
            # new key every batch, and a follower runs for days.
            while len(memo) > _MEMO_BOUND:
                memo.popitem(last=False)
        # Copies: callers own what they are given, as with Beam's own function.
        return set(found[0]), set(found[1])

    return get_dofn_specs


@contextmanager
def memoised_dofn_specs() -> Iterator[None]:
    """While the block runs, DoFn specs are worked out once per DoFn (nested blocks share one memo)."""
    with swapped(userstate, "get_dofn_specs", _memoised):
        yield
