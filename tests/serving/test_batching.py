"""The query micro-batcher: concurrent queries share passes, idle ones wait for nothing, failures reach all.

The encoder here is a stand-in that records each batch and can be held
open, so that which queries end up in which pass is deterministic; the
real model under concurrency is tested in `test_embeddings.py`.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Sequence
from functools import partial

import numpy as np
import pytest

from serving.batching import QueryBatcher, Vectors
from tests.waiting import until


class HeldEncoder:
    """Encodes a text as [len(text), batch index]; holds the first pass until released."""

    def __init__(self) -> None:
        self.batches: list[list[str]] = []
        self.entered = threading.Event()
        self.release = threading.Event()
        self.fail_with: Exception | None = None

    def __call__(self, texts: Sequence[str]) -> Vectors:
        self.batches.append(list(texts))
        if len(self.batches) == 1:
            self.entered.set()
            assert self.release.wait(10)
        if self.fail_with is not None:
            raise self.fail_with
        return np.array([[len(t), len(self.batches)] for t in texts], dtype=np.float32)


def wait_until(condition: Callable[[], bool], timeout: float = 10) -> None:
    until(condition, timeout_s=timeout, every_s=0.005)


def has_queued(batcher: QueryBatcher, n: int) -> bool:
    return batcher.queued == n


def run_concurrently(
    batcher: QueryBatcher, encoder: HeldEncoder, first: str, rest: list[str]
) -> dict[str, object]:
    """`first` starts a pass that is held; `rest` queue behind it; then the pass is released."""
    results: dict[str, object] = {}

    def call(text: str) -> None:
        try:
            results[text] = batcher.embed(text)
        except Exception as e:  # noqa: BLE001 — the test inspects what each caller got
            results[text] = e

    threads = [threading.Thread(target=call, args=(first,))]
    threads[0].start()
    assert encoder.entered.wait(10)
    for queued, text in enumerate(rest, start=1):
        threads.append(threading.Thread(target=call, args=(text,)))
        threads[-1].start()
        wait_until(partial(has_queued, batcher, queued))  # one at a time: the queue order is known
    encoder.release.set()
    for t in threads:
        t.join(10)
    return results


def test_an_idle_batcher_runs_each_query_at_once() -> None:
    encoder = HeldEncoder()
    encoder.release.set()
    batcher = QueryBatcher(encoder, parallel=1)
    assert batcher.embed("abc").tolist() == [3, 1]
    assert batcher.embed("de").tolist() == [2, 2]
    assert encoder.batches == [["abc"], ["de"]]


def test_queries_queued_behind_a_running_pass_share_the_next_one() -> None:
    encoder = HeldEncoder()
    batcher = QueryBatcher(encoder, max_batch=3, parallel=1)
    rest = ["bb", "ccc", "bb", "dddd", "eeeee"]
    results = run_concurrently(batcher, encoder, "a", rest)
    # One held pass, then the queue in order, three at a time, a repeated text encoded once.
    assert encoder.batches[0] == ["a"]
    assert encoder.batches[1:] == [["bb", "ccc"], ["dddd", "eeeee"]]
    assert batcher.passes == 3
    for text in ["a", *rest]:
        vector = results[text]
        assert isinstance(vector, np.ndarray)
        assert vector[0] == len(text)


def test_up_to_parallel_passes_run_at_once() -> None:
    encoder = HeldEncoder()
    batcher = QueryBatcher(encoder, parallel=2)
    held = threading.Thread(target=batcher.embed, args=("held",))
    held.start()
    assert encoder.entered.wait(10)
    # The first pass is still running; a second caller runs its own instead of queueing behind it.
    assert batcher.embed("free").tolist() == [4, 2]
    encoder.release.set()
    held.join(10)
    assert encoder.batches == [["held"], ["free"]]


def test_a_failed_pass_fails_every_caller_in_it_and_the_batcher_recovers() -> None:
    encoder = HeldEncoder()
    encoder.fail_with = ValueError("model broke")
    batcher = QueryBatcher(encoder, parallel=1)
    results = run_concurrently(batcher, encoder, "a", ["bb", "cc"])
    assert all(isinstance(r, ValueError) for r in results.values())
    encoder.fail_with = None
    assert batcher.embed("ok").tolist() == [2, 3]


def test_bad_limits_are_refused() -> None:
    with pytest.raises(ValueError, match="at least 1"):
        QueryBatcher(HeldEncoder(), parallel=0)
