"""Where the tables live and how they are opened: `Lake` is the one entry to every table.

Tables are created on first use with their explicit schema, the change data
feed on, and retention that keeps at least the rollback window. A local
folder and an object store (`s3://...` with `storage_options`) work the same
way. The constructor does no I/O.
"""

from __future__ import annotations

__all__ = [
    "Head",
    "Lake",
    "watermark_set_by",
    "land_app_id",
    "materialize_app_id",
    "WATERMARK_KEY",
    "EVENTS_KEY",
    "OFFSETS_KEY",
    "DEAD_LETTERS_KEY",
    "WRITER_KEY",
    "REWRITES_KEY",
    "PART_KEY",
    "delta_errors",
    "lake_error",
]

import json
import re
from collections.abc import Callable, Hashable, Iterable, Iterator
from contextlib import contextmanager
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any, NamedTuple, TypeVar

import pyarrow as pa

from lake.heads import table_heads
from lake.schemas import TABLES, TableSpec, spec
from memlake.errors import ConcurrentWriteError, ConfigError, LakeError, StoreUnavailableError
from memlake.settings import LakeSettings

if TYPE_CHECKING:
    from deltalake import DeltaTable

# Commit metadata every memlake commit carries, so that a table's history says
# which events-table version each of its versions reflects (`memlake.watermark`)
# and how many events a land commit added (`memlake.events`).
WATERMARK_KEY = "memlake.watermark"
EVENTS_KEY = "memlake.events"
OFFSETS_KEY = "memlake.offsets"
# On a land commit: the dead letters its ranges held, and the writer (a run of the jobs) that
# made it, so that a run whose batch lost a later commit to another writer can still say
# what it landed (pipelines.follow).
DEAD_LETTERS_KEY = "memlake.dead_letters"
WRITER_KEY = "memlake.writer"
# On a commit that rewrote rows in place before a batch's own commit (an erasure): that batch's
# watermark. It moves no watermark itself.
REWRITES_KEY = "memlake.rewrites_for"
# On each but the last commit of a batch's upsert written one bucket at a time (a rebuild's):
# that batch's watermark. No cut reads such a version: the table there holds part of a batch.
PART_KEY = "memlake.part_of"
T = TypeVar("T")


def land_app_id(topic: str, partition: int) -> str:
    return f"land:{topic}:{partition}"


def materialize_app_id(table: str) -> str:
    return f"materialize:{table}"


# What delta-rs (1.6) says when another commit came first: a conflict it found, the version
# taken meanwhile, or its own retries against such commits used up.
_CONFLICT = re.compile(r"concurrent|existing table version|commit attempts", re.IGNORECASE)
# What the store client in delta-rs (object_store) says when the store did not answer: it
# retries only such failures (connections, timeouts, throttling, 5xx), and says how often.
_UNAVAILABLE = re.compile(
    r"error sending request|connection (refused|reset|closed)|timed out|after \d+ retries"
    r"|status code: (429|5\d\d)|service unavailable|dns error",
    re.IGNORECASE,
)
_ANSI = re.compile(r"\x1b\[[0-9;]*m")


def store_message(error: BaseException) -> str:
    """delta-rs' text of `error` in one line: it lays a store error's causes out one per line,
    indented, with terminal colours."""
    parts = (part.strip().lstrip("\u21b3").strip() for part in _ANSI.sub("", str(error)).splitlines())
    return ": ".join(part for part in parts if part)


def lake_error(table: str, error: BaseException) -> LakeError:
    """`error` from delta-rs or the store as the `LakeError` it is: `StoreUnavailableError`
    when the store did not answer."""
    text = store_message(error)
    kind = StoreUnavailableError if _UNAVAILABLE.search(text) else LakeError
    return kind(table, f"{type(error).__name__}: {text}")


@contextmanager
def delta_errors(
    table: str, *, started_at: Callable[[], tuple[int, int] | None] | None = None
) -> Iterator[None]:
    """Translate delta-rs errors into `LakeError` with the table's name: a conflict with
    another writer's commit into `ConcurrentWriteError`.

    `started_at` tells a conflict whatever delta-rs' words: it gives the version the commit
    started from and the table's version now (None: not known), read only once a commit
    failed. Some refusals say nothing of a conflict (a restore's "Failed to commit
    transaction: 0"), and the words may change between delta-rs versions.
    """
    from deltalake.exceptions import CommitFailedError, DeltaError

    try:
        yield
    except CommitFailedError as e:
        # delta-rs raises this type for any failed commit (a store error too): only a
        # conflict is worth planning again.
        if _CONFLICT.search(str(e)):
            raise ConcurrentWriteError(table, f"another writer committed first: {store_message(e)}") from e
        versions = _versions(table, started_at)
        if versions is not None and versions[1] > versions[0]:
            first, now = versions
            raise ConcurrentWriteError(
                table, f"another writer committed after version {first} (now at {now}): {store_message(e)}"
            ) from e
        raise lake_error(table, e) from e
    except (DeltaError, OSError) as e:
        raise lake_error(table, e) from e


def _versions(table: str, started_at: Callable[[], tuple[int, int] | None] | None) -> tuple[int, int] | None:
    """`started_at()`, or None when it is not known or cannot be read now (the store failed:
    the commit's own error says more)."""
    from deltalake.exceptions import DeltaError

    if started_at is None:
        return None
    try:
        return started_at()
    except (DeltaError, OSError, LakeError):
        return None


_HEAD = "head"  # the memo of a `Head` per table version: read by `head`, known by writers


class Head(NamedTuple):
    """A table's newest version, the watermark it reflects, and whether that version's own
    commit moved the watermark (`settled`). An unsettled head (an erasure's rewrite for the
    next batch, a part of a batch, maintenance) may hold part of a batch past `watermark`."""

    version: int
    watermark: int
    settled: bool


def watermark_set_by(commit: dict[str, Any]) -> int | None:
    """The watermark a commit (an entry of a table's history) moved its table to; None for a
    commit that moved none (maintenance, an erasure's rewrite, a part of a batch)."""
    mark = commit.get(WATERMARK_KEY)
    return None if mark is None else int(mark)


def _head_of(name: str, dt: DeltaTable) -> Head:
    version = int(dt.version())
    # The last commit's metadata from the same state of the log as the version and watermark:
    # a commit landing between two reads could pair one version with another's metadata.
    last = dt.history(1)[0] if version > 0 else {}
    return Head(version, _watermark_of(name, dt), version == 0 or watermark_set_by(last) is not None)


def _watermark_of(name: str, dt: DeltaTable) -> int:
    value = dt.transaction_version(materialize_app_id(name))
    return -1 if value is None else int(value)


class Lake:
    """The Delta tables under `settings.root`."""

    def __init__(self, settings: LakeSettings) -> None:
        if settings.log_retention_hours < settings.rollback_window_hours:
            raise ConfigError(
                "lake.log_retention_hours",
                f"{settings.log_retention_hours} h is shorter than the rollback window "
                f"({settings.rollback_window_hours} h): time travel could not reach it",
            )
        self.settings = settings
        self._created: set[str] = set()

    @property
    def root(self) -> str:
        return self.settings.root.rstrip("/")

    @property
    def storage_options(self) -> dict[str, str] | None:
        return dict(self.settings.storage_options) or None

    @property
    def is_local(self) -> bool:
        return "://" not in self.root or self.root.startswith("file://")

    def uri(self, name: str) -> str:
        spec(name)
        return f"{self.root}/{name}"

    def configuration(self) -> dict[str, str | None]:
        s = self.settings
        return {
            "delta.enableChangeDataFeed": "true",
            "delta.checkpointInterval": str(s.checkpoint_interval),
            "delta.logRetentionDuration": f"interval {s.log_retention_hours} hours",
            # Files a commit removed stay this long: vacuum never breaks the rollback window.
            "delta.deletedFileRetentionDuration": f"interval {s.rollback_window_hours} hours",
        }

    def exists(self, name: str) -> bool:
        from deltalake import DeltaTable

        with delta_errors(name):
            return bool(DeltaTable.is_deltatable(self.uri(name), storage_options=self.storage_options))

    def ensure(self, name: str) -> None:
        """Create the table if it does not exist yet (idempotent, safe against a racing creator)."""
        from deltalake import DeltaTable

        if name in self._created:
            return
        table = spec(name)
        if self.is_local:
            Path(self.uri(name).removeprefix("file://")).parent.mkdir(parents=True, exist_ok=True)
        if not self.exists(name):
            with delta_errors(name):
                DeltaTable.create(
                    self.uri(name),
                    table.schema,
                    mode="ignore",  # another process may have created it since we looked
                    partition_by=list(table.partition_by) or None,
                    name=name,
                    description=table.description,
                    configuration=self.configuration(),
                    storage_options=self.storage_options,
                )
        self._created.add(name)

    def ensure_all(self, names: Iterable[str] = TABLES) -> None:
        for name in names:
            self.ensure(name)

    def table(self, name: str, *, version: int | str | datetime | None = None) -> DeltaTable:
        """Open a table (created first if missing), optionally at a version or a time."""
        from deltalake import DeltaTable

        self.ensure(name)
        with delta_errors(name):
            if isinstance(version, int):
                # Loaded at that version directly: opening the newest and then going back
                # replays the log twice (31 vs 11-17 ms a table at 18 commits here).
                return DeltaTable(self.uri(name), version=version, storage_options=self.storage_options)
            dt = DeltaTable(self.uri(name), storage_options=self.storage_options)
            if version is not None:
                dt.load_as_version(version)
            return dt

    def spec(self, name: str) -> TableSpec:
        return spec(name)

    def _read_head(self, name: str, read: Callable[[DeltaTable], T], *, memo: Hashable | None = None) -> T:
        """`read` on the table's newest version, opened once per process (lake.heads);
        with `memo`, read once per table version."""
        self.ensure(name)
        with delta_errors(name):
            return table_heads().read(self.uri(name), self.storage_options, read, memo=memo)

    def write_to(self, name: str, write: Callable[[DeltaTable], T]) -> T:
        """`write` on the table at its newest version, kept open per process for writes
        (lake.heads; one write per table at a time). `write` must not keep the table."""
        self.ensure(name)
        opened: list[DeltaTable] = []

        def tracked(dt: DeltaTable) -> T:
            opened.append(dt)
            return write(dt)

        def moved() -> tuple[int, int] | None:
            # `dt` moves with this write's own commits (an erasure's rewrite before the batch's):
            # the failed commit started from where it stands, not from where the write began.
            return (int(opened[-1].version()), self.version(name)) if opened else None

        with delta_errors(name, started_at=moved):
            return table_heads().write(self.uri(name), self.storage_options, tracked)

    def version(self, name: str) -> int:
        return self._read_head(name, lambda dt: int(dt.version()))

    def head(self, name: str) -> Head:
        """The table's newest version, the watermark it reflects and whether its last commit
        moved it, read from one state of its log (separate reads could straddle a commit)."""
        return self._read_head(name, lambda dt: _head_of(name, dt), memo=_HEAD)

    def watermark(self, name: str, *, dt: DeltaTable | None = None) -> int:
        """The last events-table version a derived table reflects (-1 for none); with `dt`,
        at that table's loaded version, answered from the head memo when this process read
        or committed that version (a version's watermark never changes)."""
        if dt is None:
            return self.head(name).watermark
        with delta_errors(name):
            known = table_heads().recall(self.uri(name), _HEAD, int(dt.version()))
            return known.watermark if isinstance(known, Head) else _watermark_of(name, dt)

    def committed(self, name: str, version: int, watermark: int, *, settled: bool = True) -> None:
        """Note that `version` of the table, written by this process, reflects `watermark`;
        `settled`: that commit moved the watermark (it carries `WATERMARK_KEY`)."""
        table_heads().remember(self.uri(name), _HEAD, version, Head(version, watermark, settled))

    def watermarks(self, names: Iterable[str]) -> dict[str, int]:
        return {name: self.watermark(name) for name in names}

    def land_offsets(
        self, topic: str, partitions: Iterable[int], *, dt: DeltaTable | None = None
    ) -> dict[int, int]:
        """The last offset landed per partition (absent: nothing landed yet)."""
        wanted = tuple(sorted(set(partitions)))

        def stored(table: DeltaTable) -> dict[int, int]:
            out: dict[int, int] = {}
            for partition in wanted:
                value = table.transaction_version(land_app_id(topic, partition))
                if value is not None:
                    out[partition] = int(value)
            return out

        if dt is None:
            return dict(self._read_head("events", stored, memo=("land_offsets", topic, wanted)))
        with delta_errors("events"):
            return stored(dt)

    def has_change_feed(self, name: str, version: int) -> bool:
        """Whether the table's change data feed still holds `version` (vacuum removes it)."""

        def read(dt: DeltaTable) -> None:
            # One column, the first key (not "partition" or "offset", which delta-rs' SQL refuses).
            reader = dt.load_cdf(
                starting_version=version, ending_version=version, columns=[spec(name).keys[0]]
            )
            pa.RecordBatchReader.from_stream(reader).read_all()

        try:
            self._read_head(name, read)
        except StoreUnavailableError:
            raise  # says nothing of the feed: planning a refold of the whole log on it would be wrong
        except LakeError:
            return False
        except pa.ArrowInvalid as e:
            # A vacuumed file surfaces from the C stream as ArrowInvalid, not as a delta-rs
            # error; so does a store that stopped answering in the middle of the read.
            error = lake_error(name, e)
            if isinstance(error, StoreUnavailableError):
                raise error from e
            return False
        return True

    def commit_log(self, name: str, *, limit: int | None = None) -> list[dict[str, Any]]:
        """The table's commits, newest first, with memlake's metadata decoded."""
        # Read through the kept-open table, once per table version: a version's log never changes.
        history = self._read_head(name, lambda dt: dt.history(limit), memo=("history", limit))
        out = []
        for entry in history:
            item = dict(entry)
            if WATERMARK_KEY in item:
                item[WATERMARK_KEY] = int(item[WATERMARK_KEY])
            for count in (EVENTS_KEY, DEAD_LETTERS_KEY):
                if count in item:
                    item[count] = int(item[count])
            if OFFSETS_KEY in item and isinstance(item[OFFSETS_KEY], str):
                item[OFFSETS_KEY] = {int(k): int(v) for k, v in json.loads(item[OFFSETS_KEY]).items()}
            out.append(item)
        return out
