"""memlake: a memory operating system for LLMs, built as an event-sourced lakehouse.

This package is the kernel: the domain model, the events, the pure fold and
the settings. It imports no other layer of the project.
"""

from memlake.errors import MemlakeError
from memlake.events import Event, parse_event, serialize_event
from memlake.fold import CubeState, apply, fold, project
from memlake.model import Cube, Memory

__all__ = [
    "MemlakeError",
    "Event",
    "parse_event",
    "serialize_event",
    "CubeState",
    "apply",
    "fold",
    "project",
    "Cube",
    "Memory",
]
__version__ = "0.1.0"
