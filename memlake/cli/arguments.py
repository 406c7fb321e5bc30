"""Argument types of the command line: a bad value is a usage error naming the flag.

argparse turns an `ArgumentTypeError` into `memlake CMD: error: argument --flag:
<message>` and exit status 2, before any command touches Kafka or the lake. A
plain `ValueError` from a parser would surface as a traceback (or as "invalid
_when value", argparse naming a private function).
"""

from __future__ import annotations

__all__ = ["as_of", "count", "cube_version", "night", "port", "principal", "seconds", "timestamp"]

import argparse
from datetime import UTC, datetime, time

from pydantic import ValidationError

from memlake.errors import one_line
from memlake.model import Actor, ActorKind

_EXAMPLE = "e.g. 2026-01-01T12:00:00+00:00"


def timestamp(value: str) -> datetime:
    """An ISO 8601 time with its timezone."""
    try:
        moment = datetime.fromisoformat(value)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{value!r} is not an ISO 8601 time ({_EXAMPLE})") from None
    if moment.tzinfo is None:
        raise argparse.ArgumentTypeError(f"{value!r} needs a timezone ({_EXAMPLE})")
    return moment


def night(value: str) -> datetime:
    """A day (YYYY-MM-DD), as its last second in UTC: the nightly jobs count usage up to it."""
    try:
        day = datetime.strptime(value, "%Y-%m-%d").date()
    except ValueError:
        raise argparse.ArgumentTypeError(f"{value!r} is not a day (YYYY-MM-DD, e.g. 2026-01-31)") from None
    return datetime.combine(day, time(23, 59, 59), tzinfo=UTC)


def as_of(value: str) -> int | datetime:
    """A version (an integer, 0 or more) or an ISO 8601 time with its timezone."""
    if value.lstrip("-").isdigit():
        return _integer(value, least=0, what="a version", outside="versions start at 0")
    return timestamp(value)


def _integer(value: str, *, least: int, what: str, outside: str, most: int | None = None) -> int:
    try:
        number = int(value)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{value!r} is not {what}") from None
    if number < least or (most is not None and number > most):
        raise argparse.ArgumentTypeError(f"{value!r}: {outside}")
    return number


def count(value: str) -> int:
    """How many: an integer from 1 (0 or less would silently show nothing)."""
    return _integer(value, least=1, what="a number", outside="give 1 or more")


def port(value: str) -> int:
    """A TCP port to bind, 1 to 65535."""
    return _integer(value, least=1, most=65535, what="a port number", outside="ports run from 1 to 65535")


def seconds(value: str) -> float:
    """A duration in seconds, more than 0."""
    try:
        duration = float(value)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{value!r} is not a number of seconds") from None
    if not duration > 0:  # also refuses nan
        raise argparse.ArgumentTypeError(f"{value!r}: give more than 0 seconds")
    return duration


def cube_version(value: str) -> int:
    """A cube version: cubes start at version 1."""
    return _integer(
        value, least=1, what="a cube version (an integer from 1)", outside="cube versions start at 1"
    )


def principal(value: str) -> Actor:
    """`kind:id` (e.g. `user:alice`, `system:nightly`), or a bare id for the user of that id."""
    kind, sep, ident = value.partition(":")
    kinds = ", ".join(k.value for k in ActorKind)
    if sep and kind not in {k.value for k in ActorKind}:
        raise argparse.ArgumentTypeError(f"{value!r}: the kind {kind!r} is none of {kinds}")
    try:
        return Actor(kind=ActorKind(kind), id=ident) if sep else Actor(kind=ActorKind.USER, id=value)
    except ValidationError as e:
        raise argparse.ArgumentTypeError(f"{value!r} is not a principal's id: {one_line(e)}") from None
