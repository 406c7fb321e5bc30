"""A call to Kafka that fails for want of a broker, as memlake's error.

kafka-python raises its own errors (a request timed out, no broker reachable) and
sockets raise `OSError`. Every edge that talks to the broker turns those into a
`BrokerUnavailableError` naming the bootstrap servers and the call: a follower
rides that error out, the CLI prints it as one line and the API answers 503,
where kafka-python's own error ended all three.
"""

from __future__ import annotations

__all__ = ["broker_calls"]

from collections.abc import Iterator
from contextlib import contextmanager

from memlake.errors import BrokerUnavailableError


@contextmanager
def broker_calls(bootstrap: str, what: str) -> Iterator[None]:
    """Run the body; a kafka-python or socket error in it becomes `BrokerUnavailableError`.

    memlake's own errors pass through as they are: one raised inside (a topic that never
    showed, a write not confirmed) already says what went wrong.
    """
    from kafka.errors import KafkaError

    try:
        yield
    except (KafkaError, OSError) as e:
        raise BrokerUnavailableError(bootstrap, f"{what}: {type(e).__name__}: {e}") from e
