"""The lease that makes one process the writer of a lake's derived tables.

Two writers on one lake stay exact without it: the commit that comes second is
refused and its batch planned again (pipelines.follow). But the second writer
folds every batch too, only to have its commits refused, and the two keep
overtaking each other. So land and materialize first take the lease `writer`
of the lake (lake.lease). Another follower stands by: it folds nothing, looks
again every twentieth of the lease, and takes over once the lease is released (the
holder stopped) or has expired (the holder died). A one-shot run refuses with
the holder's name instead of waiting.

The holder keeps the lease renewed from a thread of its own, so that a batch
longer than half the lease does not lose it. Should it lose it anyway (its host
stalled past the expiry and another process took over), the batch it is
running may still commit: that is the two-writers case above, exact, and the
process stands by after it.

A holder that died on this host is known at once: its process id is gone from
this pid namespace (or is this process's own, which does not hold it). A
follower restarted after a crash then takes over without waiting for the
expiry. In another host or container (another pid namespace) only the expiry
tells.
"""

from __future__ import annotations

__all__ = ["WriterLease", "WRITER_LEASE"]

import logging
import os
import socket
import threading

from lake.lease import Lease, pid_namespace
from lake.tables import Lake
from memlake.errors import LakeError, LeaseHeldError

_log = logging.getLogger(__name__)
WRITER_LEASE = "writer"


# The holder ids the writer leases of this process hold now.
_HELD_HERE: set[str] = set()


def _died_here(holder: str) -> bool:
    """Whether `holder` was a process of this host and pid namespace that is gone.

    A holder with this process's own id that this process does not hold died too (its
    pid was reused by this process). Any other holder, or an id of another form, is
    waited for until its lease expires."""
    parts = holder.split(":")
    if len(parts) != 4:
        return False
    host, pid, namespace, _ = parts
    if host != socket.gethostname() or namespace != pid_namespace() or not namespace or not pid.isdigit():
        return False
    if int(pid) == os.getpid():
        return holder not in _HELD_HERE
    try:
        os.kill(int(pid), 0)
    except ProcessLookupError:
        return True
    except PermissionError:
        return False  # alive, another user's
    return False


class WriterLease:
    """This process's claim to be the lake's writer; `seconds` as `pipelines.writer_lease_s`."""

    def __init__(self, lake: Lake, *, seconds: float, holder: str | None = None) -> None:
        self._lease = Lease(lake, WRITER_LEASE, seconds=seconds, holder=holder)
        self._holding = False
        self._lost: LeaseHeldError | None = None
        self._stop = threading.Event()
        self._heartbeat: threading.Thread | None = None

    @property
    def holder(self) -> str:
        return self._lease.holder

    def claim(self) -> LeaseHeldError | None:
        """None when this process is the writer now: it takes the lease when free, keeps it
        when held. Else who holds it (nothing taken)."""
        if self._holding and self._lost is None:
            return None
        if self._lost is not None:
            self.release()
        try:
            self.take()
        except LeaseHeldError as e:
            return e
        return None

    def take(self) -> None:
        """Take the lease, or raise `LeaseHeldError` naming its holder."""
        try:
            self._lease.acquire()
        except LeaseHeldError as e:
            if e.holder is None or not _died_here(e.holder):
                raise
            _log.warning("lease %r: its holder %s is no longer running; taking it over", e.lease, e.holder)
            self._lease.acquire(taking_over=e.holder)
        self._holding, self._lost = True, None
        _HELD_HERE.add(self.holder)
        self._stop.clear()
        self._heartbeat = threading.Thread(target=self._beat, name="memlake-writer-lease", daemon=True)
        self._heartbeat.start()

    def release(self) -> None:
        """Stop renewing and give the lease up (if still this process's)."""
        self._stop.set()
        if self._heartbeat is not None:
            self._heartbeat.join()
            self._heartbeat = None
        if self._holding:
            self._holding = False
            _HELD_HERE.discard(self.holder)
            try:
                self._lease.release()
            except LakeError as e:
                # The work is done (or failed for its own reason, not to be masked by this one):
                # the lease ends at its expiry instead, and a standby waits until then.
                _log.warning("lease %r not released, it expires by itself: %s", WRITER_LEASE, e)

    def _beat(self) -> None:
        # A quarter of the lease between looks; `Lease.renew` commits once half of it has gone.
        every = self._lease.seconds / 4
        while not self._stop.wait(every):
            try:
                self._lease.renew()
            except LeaseHeldError as e:
                self._lost = e
                _log.warning("%s; this process stands by after its current batch", e)
                return
            except LakeError as e:
                # The store failed this once: the lease is still ours until it expires.
                _log.warning("lease %r not renewed, trying again: %s", WRITER_LEASE, e)
