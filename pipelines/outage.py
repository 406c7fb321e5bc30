"""A follower rides out an outage of Kafka or of the lake's store: it waits, tries again,
and says when the service is back.

A broker restart, a rolling upgrade, a network partition or an object store
throttling or failing for a while is no reason for a follower to exit. Nothing
of a batch lands before its commit, and a batch that failed part-way is repaired
by the next like a crash's, so trying again is exact. Follow mode therefore
waits and tries again: first after `pipelines.follow_interval_s`, then twice as
long after each failed try, at most `pipelines.outage_backoff_max_s`. It logs
the outage when it begins and when it ends, and counts it in the progress line.
A one-shot run fails at once with the error instead: whatever scheduled it
decides when to try again.

What counts as an outage: Kafka unreachable or not answering in time
(`BrokerUnavailableError`); a dead letter the broker did not confirm for a
reason a later try may not meet (`WriteNotConfirmedError.retriable`); the
lake's store not answering after its client's own retries
(`StoreUnavailableError`: refused or reset connections, timeouts, throttling,
server errors; `max_retries` and `retry_timeout` in `lake.storage_options` say
how long delta-rs retries a request before memlake sees it). A write the broker
refuses for what it is (too large, not authorized), a bucket that does not
exist or refused credentials are no outage: waiting would not change them.
"""

from __future__ import annotations

__all__ = ["Outage", "is_outage"]

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field

from memlake.errors import BrokerUnavailableError, MemlakeError, StoreUnavailableError, WriteNotConfirmedError

_log = logging.getLogger(__name__)


def is_outage(error: MemlakeError) -> bool:
    """Whether `error` says Kafka or the lake's store is away for now, rather than that the
    work is wrong."""
    if isinstance(error, BrokerUnavailableError | StoreUnavailableError):
        return True
    return isinstance(error, WriteNotConfirmedError) and error.retriable


@dataclass
class Outage:
    """The outage a follower is in, if any: when it began and how many tries failed since."""

    first_wait_s: float
    max_wait_s: float
    clock: Callable[[], float] = field(default=time.monotonic, repr=False)
    began: float | None = None
    failed_tries: int = 0
    away: list[str] = field(default_factory=list)  # what was away ("Kafka", "the lake's store")

    def failed(self, error: MemlakeError) -> float:
        """A try failed with `error`: the seconds to wait before the next."""
        if self.began is None:
            self.began = self.clock()
            _log.warning("%s; waiting for it and trying again", error)
        if (what := _service(error)) not in self.away:
            self.away.append(what)
        self.failed_tries += 1
        wait = min(self.max_wait_s, self.first_wait_s * 2.0 ** (self.failed_tries - 1))
        if self.failed_tries > 1:
            _log.info(
                "still unavailable after %.0f s (%d tries); next try in %.1f s",
                self.clock() - self.began,
                self.failed_tries,
                wait,
            )
        return wait

    def over(self) -> float | None:
        """A try went through: how long the outage lasted (None: there was none)."""
        if self.began is None:
            return None
        lasted = self.clock() - self.began
        away = " and ".join(self.away)
        _log.warning(
            "%s %s again after %.0f s and %d failed tries; going on",
            away[:1].upper() + away[1:],
            "answers" if len(self.away) == 1 else "answer",
            lasted,
            self.failed_tries,
        )
        self.began, self.failed_tries, self.away = None, 0, []
        return lasted


def _service(error: MemlakeError) -> str:
    return "the lake's store" if isinstance(error, StoreUnavailableError) else "Kafka"
