"""A lease on a lake: at most one holder at a time, wherever it runs.

Compaction needs it. delta-rs (1.6.6) lets two compactions of the same files both
commit: each adds its compacted copy, the second one's removes find the files gone,
and the table then holds every row twice. Nothing in the table's own log stops it
(a transaction id on the compaction commit does not either: measured). So a
compaction first takes the lease `compact` of the lake, wherever it runs: the
follower's maintenance, `memlake lake compact`, a scheduler's job.

The lease is a Delta table of its own under `<root>/_leases/<name>`, with no rows:
its newest commit's metadata says who holds it until when. Taking, renewing and
releasing it are empty commits carrying the transaction id `memlake:lease` at the
next number. That is the compare-and-set: of two processes that read the same
state, delta-rs refuses the second commit (the same id landed after the version it
read), on any store where commits are atomic, as the jobs' commits need too
(docs/lake.md, "Tables"). A holder that dies without releasing blocks the others
until the lease expires (`lake.compaction_lease_s`); the holder renews it before
each table.
"""

from __future__ import annotations

__all__ = ["Lease", "LeaseState", "lease_state", "holder_id", "pid_namespace"]

import os
import socket
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING

import pyarrow as pa

from lake.tables import Lake, delta_errors
from memlake.errors import ConcurrentWriteError, LeaseHeldError

if TYPE_CHECKING:
    from deltalake import DeltaTable

_APP = "memlake:lease"
_HOLDER = "memlake.lease.holder"
_EXPIRES = "memlake.lease.expires_at"
_SCHEMA = pa.schema([("holder", pa.string())])  # no rows are ever written
# A lease's log needs no history: delta-rs checkpoints it every 100 commits by itself and
# then drops commit files older than this.
_LOG_RETENTION = {"delta.logRetentionDuration": "interval 1 days"}


@dataclass(frozen=True)
class LeaseState:
    """Who holds a lease until when, as of one version of its log (`holder` None: free)."""

    version: int
    holder: str | None
    expires_at: datetime | None

    def held_by_other(self, holder: str, now: datetime) -> bool:
        return (
            self.holder is not None
            and self.holder != holder
            and self.expires_at is not None
            and self.expires_at > now
        )


def pid_namespace() -> str:
    """The inode of this process's pid namespace ("" where there is none to read: not Linux).

    Process ids mean something only within one namespace: two containers sharing the
    host's name (host networking) each have their own, and a pid of one is not the other's."""
    try:
        return str(os.stat("/proc/self/ns/pid").st_ino)
    except OSError:
        return ""


def holder_id(pid: int | None = None, nonce: str | None = None) -> str:
    """A holder id, `host:pid:pid-namespace:nonce` (this process and a fresh nonce by default):
    enough to tell whether the holder was a process of this host that is gone
    (pipelines.writer_lease)."""
    pid = os.getpid() if pid is None else pid
    nonce = uuid.uuid4().hex[:8] if nonce is None else nonce
    return f"{socket.gethostname()}:{pid}:{pid_namespace()}:{nonce}"


class Lease:
    """One named lease on a lake, for one holder (this process, unless `holder` is given)."""

    def __init__(self, lake: Lake, name: str, *, seconds: float, holder: str | None = None) -> None:
        self._lake = lake
        self.name = name
        self.seconds = seconds
        self.holder = holder or holder_id()
        self._expires_at: datetime | None = None

    @property
    def uri(self) -> str:
        return _uri(self._lake, self.name)

    def state(self) -> LeaseState:
        return lease_state(self._lake, self.name)

    def acquire(self, *, taking_over: str | None = None) -> None:
        """Take the lease, or raise `LeaseHeldError` naming who holds it. `taking_over`: a holder
        known to be dead, whose lease is taken before it expires (if it still holds it)."""
        self._take(renewing=False, taking_over=taking_over)

    def renew(self) -> None:
        """Extend the lease held, when less than half its time is left; `LeaseHeldError` when
        another process took it over (it had expired)."""
        now = datetime.now(UTC)
        if self._expires_at is not None and self._expires_at - now > timedelta(seconds=self.seconds / 2):
            return
        self._take(renewing=True)

    def release(self) -> None:
        """Give the lease up, if this holder still has it."""
        if self._expires_at is None:
            return
        self._expires_at = None
        with delta_errors(f"_leases/{self.name}"):
            dt = self._open()
            state = _state_of(dt)
            if state.holder != self.holder:
                return  # it expired and another holder took it: theirs now
            try:
                _commit(dt, None, None, state)
            except ConcurrentWriteError:
                return  # taken over at this moment, after expiry: theirs now

    @contextmanager
    def held(self) -> Iterator[Lease]:
        self.acquire()
        try:
            yield self
        finally:
            self.release()

    def _take(self, *, renewing: bool, taking_over: str | None = None) -> None:
        with delta_errors(f"_leases/{self.name}"):
            dt = self._open()
            state = _state_of(dt)
            now = datetime.now(UTC)
            lost = renewing and state.holder != self.holder
            if lost or (state.held_by_other(self.holder, now) and state.holder != taking_over):
                self._expires_at = None
                raise LeaseHeldError(self.name, state.holder, state.expires_at)
            expires_at = now + timedelta(seconds=self.seconds)
            try:
                _commit(dt, self.holder, expires_at, state)
            except ConcurrentWriteError as e:
                self._expires_at = None
                raise LeaseHeldError(self.name, None, None) from e
        self._expires_at = expires_at

    def _open(self) -> DeltaTable:
        from deltalake import DeltaTable
        from deltalake.exceptions import CommitFailedError, TableNotFoundError

        options = self._lake.storage_options
        try:
            return DeltaTable(self.uri, storage_options=options)
        except TableNotFoundError:
            try:
                # Two processes may create it at once: the one refused opens what the other made.
                return DeltaTable.create(
                    self.uri, _SCHEMA, mode="ignore", configuration=_LOG_RETENTION, storage_options=options
                )
            except CommitFailedError:
                return DeltaTable(self.uri, storage_options=options)


def _uri(lake: Lake, name: str) -> str:
    return f"{lake.root}/_leases/{name}"


def lease_state(lake: Lake, name: str) -> LeaseState:
    """The lease `name` of `lake` as it stands (free, at version -1, if never taken): a read,
    creating nothing."""
    from deltalake import DeltaTable
    from deltalake.exceptions import TableNotFoundError

    with delta_errors(f"_leases/{name}"):
        try:
            return _state_of(DeltaTable(_uri(lake, name), storage_options=lake.storage_options))
        except TableNotFoundError:
            return LeaseState(-1, None, None)


def _state_of(dt: DeltaTable) -> LeaseState:
    version = int(dt.version())
    last = dt.history(1)[0] if version > 0 else {}
    holder = last.get(_HOLDER) or None
    expires = last.get(_EXPIRES)
    return LeaseState(version, holder, datetime.fromisoformat(expires) if expires else None)


def _commit(dt: DeltaTable, holder: str | None, expires_at: datetime | None, read: LeaseState) -> None:
    """An empty commit saying who holds the lease (None: nobody) until when; refused with
    `ConcurrentWriteError` when another commit of the lease landed since `read`."""
    from deltalake import CommitProperties, Transaction, write_deltalake

    metadata = {_HOLDER: holder or "", _EXPIRES: expires_at.isoformat() if expires_at else ""}
    number = (dt.transaction_version(_APP) or 0) + 1
    properties = CommitProperties(app_transactions=[Transaction(_APP, number)], custom_metadata=metadata)
    assert int(dt.version()) == read.version  # the state was read from this very version of the log
    with delta_errors("_leases"):
        write_deltalake(dt, _SCHEMA.empty_table(), mode="append", commit_properties=properties)
