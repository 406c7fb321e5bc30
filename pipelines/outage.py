"""A follower rides out a broker outage: it waits, tries again, and says when Kafka is back.

A broker restart, a rolling upgrade or a network partition is no reason for a
follower to exit. Nothing of a batch lands before its commit, and a batch that
failed part-way is repaired by the next like a crash's, so trying again is
exact. Follow mode therefore waits and tries again: first after
`pipelines.follow_interval_s`, then twice as long after each failed try, at
most `pipelines.outage_backoff_max_s`. It logs the outage when it begins and
when it ends, and counts it in the progress line. A one-shot run fails at once
with the error instead: whatever scheduled it decides when to try again.

What counts as an outage: Kafka unreachable or not answering in time
(`BrokerUnavailableError`), and a dead letter the broker did not confirm for a
reason a later try may not meet (`WriteNotConfirmedError.retriable`). A write
the broker refuses for what it is (too large, not authorized) is no outage:
waiting would not change it.
"""

from __future__ import annotations

__all__ = ["Outage", "is_outage"]

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field

from memlake.errors import BrokerUnavailableError, MemlakeError, WriteNotConfirmedError

_log = logging.getLogger(__name__)


def is_outage(error: MemlakeError) -> bool:
    """Whether `error` says Kafka is away for now, rather than that the work is wrong."""
    if isinstance(error, BrokerUnavailableError):
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

    def failed(self, error: MemlakeError) -> float:
        """A try failed with `error`: the seconds to wait before the next."""
        if self.began is None:
            self.began = self.clock()
            _log.warning("%s; waiting for it and trying again", error)
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
        _log.warning(
            "Kafka answers again after %.0f s and %d failed tries; going on", lasted, self.failed_tries
        )
        self.began, self.failed_tries = None, 0
        return lasted
