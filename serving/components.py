"""Everything a running service holds, built once by the entry point and handed to the API."""

from __future__ import annotations

__all__ = ["Components", "OffsetProbe"]

import contextlib
import threading
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Protocol

from memlake.errors import LimitExceededError
from memlake.model import Memory
from memlake.settings import Settings
from serving.access_log import AccessRecorder
from serving.auth import ApiKeyStore
from serving.chat import ChatService
from serving.history import LakeHistory
from serving.keeper import SnapshotKeeper
from serving.retrieval import HybridRetriever
from serving.snapshot import ContentOpener, ServingSnapshot, memory_text
from serving.writes import Commands


class OffsetProbe(Protocol):
    def end_offsets(self, *, refresh: bool = False) -> Mapping[int, int]:
        """The next offset to be written per partition of the events topic (cached unless refresh)."""
        ...


@dataclass
class Components:
    settings: Settings
    keeper: SnapshotKeeper
    retriever: HybridRetriever
    chat: ChatService
    commands: Commands
    recorder: AccessRecorder
    history: LakeHistory
    keys: ApiKeyStore
    offsets: OffsetProbe
    opener: ContentOpener | None = None
    # Called on stop, last first: the index, the producer (Milvus Lite holds a file lock).
    closers: list[Callable[[], None]] = field(default_factory=list)
    _users: int = field(default=0, repr=False)
    _lifecycle: threading.Lock = field(default_factory=threading.Lock, repr=False)

    def start(self) -> None:
        """Start once; nested starts (an app whose lifespan runs twice) only count."""
        with self._lifecycle:
            self._users += 1
            if self._users > 1:
                return
            self.keeper.start()
            self.recorder.start()

    def stop(self) -> None:
        with self._lifecycle:
            self._users -= 1
            if self._users > 0:
                return
            self.recorder.stop()
            self.keeper.stop()
            for close in reversed(self.closers):
                close()

    def _check_positions(self, positions: Sequence[tuple[int, int]]) -> None:
        ends = self.offsets.end_offsets()
        if any(p not in ends or o >= ends[p] for p, o in positions):
            ends = self.offsets.end_offsets(refresh=True)
        for partition, offset in positions:
            if partition not in ends:
                raise LimitExceededError("wait_for.partition", limit=max(ends, default=-1), actual=partition)
            if offset >= ends[partition]:
                # Never written: waiting for it could only time out.
                raise LimitExceededError("wait_for.offset", limit=ends[partition] - 1, actual=offset)

    @contextlib.contextmanager
    def snapshot_for(
        self,
        *,
        consistency: str = "snapshot",
        wait_for: Sequence[tuple[int, int]] = (),
        timeout_s: float | None = None,
    ) -> Iterator[ServingSnapshot]:
        """The snapshot a request answers from, held for the request (waiting first if asked)."""
        if consistency == "wait" and wait_for:
            self._check_positions(wait_for)
            limit = self.settings.serving.consistency_timeout_s
            self.keeper.wait_for(wait_for, timeout_s=min(timeout_s or limit, limit))
        with self.keeper.lease() as snapshot:
            yield snapshot

    def text_of(self, snapshot: ServingSnapshot | None, memory: Memory) -> str | None:
        if snapshot is not None:
            shard = snapshot.shards.get(memory.cube_id)
            if shard is not None:
                current = shard.memories.get(memory.memory_id)
                if current is not None and current.version == memory.version:
                    text = shard.texts.get(memory.memory_id)
                    if text is not None and memory.content is not None:
                        return text
        return memory_text(memory, self.opener)
