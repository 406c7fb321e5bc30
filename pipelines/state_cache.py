"""Folded cube states kept in a materialize worker between micro-batches.

Reading a cube's prior state costs a scan of several tables and a JSON decode
per memory version; a cube the batch rolls back or erases needs its whole
history (tens of thousands of decodes). A follower folds the same cubes batch
after batch, so it keeps each cube's state as its fold left it, tagged with
the events version the batch took the tables to.

Why a kept state is exactly what the lake holds: a derived table reflects
events version `w` only once its commit of the batch ending at `w` landed,
and the fold is a pure function of the events up to `w`. So a state kept at
`w` is used only when the batch's consistent cut is at `w` (`Cut.watermark`);
after a crash between commits, a `restore`, or another writer, the cut is
elsewhere and the state is read from the lake as before. Only complete states
are kept (every memory and version, and the cube versions that changed more
than the version, as a whole read from the lake has them), because the next
batch may roll the cube back. Which event ids a cube applied or refused
is still looked up per batch (`lake.state.judged_events`): a redelivered
event may be older than anything kept here.

The cache is per process and per lake root, bounded by the memory versions it
holds (`pipelines.state_cache_versions`), least recently used out first. A state
kept at a batch's cut whose cube has no events in that batch is still exact at
the batch's end (the fold changes nothing of it), so it moves on with the
batch; any other state left at an older watermark can never be used again and
is dropped before the next batch loads anything.
"""

from __future__ import annotations

__all__ = ["KeptState", "StateCache", "changes_only", "drop_state_cache", "keep", "state_cache"]

import threading
from collections import OrderedDict
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, replace
from typing import Any

from lake.state import LoadedState
from memlake.fold import CubeState
from memlake.model import Cube
from pipelines.folding import changed_more_than_version


@dataclass(frozen=True)
class KeptState:
    """A cube's complete state after a batch, and the event behind each memory version."""

    watermark: int
    state: CubeState  # `applied` and `refused` emptied: they are looked up per batch
    made_by: Mapping[tuple[str, int], tuple[str | None, str | None]]
    versions: int  # memory and cube versions held, what the bound counts

    def loaded(self, applied: set[str], refused: set[str]) -> LoadedState:
        state = replace(self.state, applied=frozenset(applied), refused=frozenset(refused))
        return LoadedState(state, state.history, self.made_by, complete=True)


def changes_only(cube_history: Iterable[Cube]) -> tuple[Cube, ...]:
    """The cube versions that changed more than the version, as a whole read of the cube
    from the lake loads them (`cube_versions` rows with `cube_json`): every memory event
    makes a cube version too, and a rollback reads only the policy of the newest version
    at or before its target, which the versions left out share with the one before them."""
    kept: list[Cube] = []
    for cube in cube_history:
        if changed_more_than_version(kept[-1] if kept else None, cube):
            kept.append(cube)
    return tuple(kept)


def keep(
    watermark: int,
    state: CubeState,
    prior: LoadedState,
    new_versions: list[dict[str, Any]],
) -> KeptState:
    """What to keep of a complete state folded at `watermark` (`new_versions`: its memory_versions rows)."""
    made_by = dict(prior.loaded_events)
    for row in new_versions:
        made_by.setdefault((row["memory_id"], row["version"]), (row["event_id"], row["event_type"]))
    cube_history = changes_only(state.cube_history)
    # Cube versions count too: a cube whose policy or ACL changes often holds many of them.
    # Counting every memory event's version as well halved how many events of a cube a
    # follower kept (the cache overflowed after 50 s at 1,000 events/s onto 20 cubes).
    versions = sum(len(v) for v in state.history.values()) + len(cube_history)
    kept = replace(state, applied=frozenset(), refused=frozenset(), cube_history=cube_history)
    return KeptState(watermark, kept, made_by, versions)


class StateCache:
    """Cube id -> its kept state; `get` answers only for the watermark asked."""

    def __init__(self, max_versions: int) -> None:
        self.max_versions = max_versions
        self._lock = threading.Lock()
        self._kept: OrderedDict[str, KeptState] = OrderedDict()
        self._held = 0
        self.hits = 0
        self.misses = 0

    @property
    def held_versions(self) -> int:
        return self._held

    def get(self, cube_id: str, watermark: int) -> KeptState | None:
        with self._lock:
            kept = self._kept.get(cube_id)
            if kept is None or kept.watermark != watermark:
                self.misses += 1
                return None
            self._kept.move_to_end(cube_id)
            self.hits += 1
            return kept

    def put(self, cube_id: str, kept: KeptState) -> None:
        with self._lock:
            self._drop(cube_id)
            if kept.versions > self.max_versions:
                return
            self._kept[cube_id] = kept
            self._held += kept.versions
            while self._held > self.max_versions:
                _, evicted = self._kept.popitem(last=False)
                self._held -= evicted.versions

    def cube_ids(self) -> list[str]:
        with self._lock:
            return list(self._kept)

    def retain(self, *watermarks: int) -> int:
        """Drop every state kept at another watermark; the versions held after.

        A batch uses a state only at its own cut, and cuts only move forward: a state
        left behind (its cube had events in a batch that did not keep it, or a batch
        failed) can never be used again, so it goes before the batch loads anything.
        """
        with self._lock:
            for cube_id in [c for c, kept in self._kept.items() if kept.watermark not in watermarks]:
                self._drop(cube_id)
            return self._held

    def advance(self, cube_ids: Iterable[str], since: int, to: int) -> None:
        """States kept at `since` of cubes the batch `(since, to]` has no events for: true at `to` too."""
        with self._lock:
            for cube_id in cube_ids:
                kept = self._kept.get(cube_id)
                if kept is not None and kept.watermark == since:
                    self._kept[cube_id] = replace(kept, watermark=to)

    def forget(self, cube_id: str) -> None:
        with self._lock:
            self._drop(cube_id)

    def _drop(self, cube_id: str) -> None:
        old = self._kept.pop(cube_id, None)
        if old is not None:
            self._held -= old.versions


_CACHES: dict[str, StateCache] = {}
_CACHES_LOCK = threading.Lock()


def drop_state_cache(lake_root: str) -> None:
    """Let go of this process's kept states for the lake at `lake_root` (a lake done with)."""
    with _CACHES_LOCK:
        _CACHES.pop(lake_root, None)


def state_cache(lake_root: str, max_versions: int) -> StateCache:
    """This process's cache for the lake at `lake_root`."""
    with _CACHES_LOCK:
        cache = _CACHES.get(lake_root)
        if cache is None:
            cache = _CACHES[lake_root] = StateCache(max_versions)
        cache.max_versions = max_versions
        return cache
