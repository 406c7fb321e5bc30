"""A module attribute of Beam replaced while a block runs, and put back after.

memlake's jobs change a few of Beam's per-bundle costs this way
(`pipelines.dofn_specs`, `pipelines.side_input_weights`). Blocks nest, and run
in several threads: the outermost block installs the replacement and puts the
original back; an inner one finds it installed and leaves it alone.
"""

from __future__ import annotations

__all__ = ["swapped"]

import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from types import ModuleType
from typing import Any

_LOCK = threading.Lock()
_INSTALLED: dict[tuple[str, str], Any] = {}  # (module, attribute) -> the replacement in place


@contextmanager
def swapped(module: ModuleType, name: str, replacement: Callable[[Any], Any]) -> Iterator[None]:
    """`module.name` is `replacement(original)` while the block runs (outermost block wins)."""
    key = (module.__name__, name)
    with _LOCK:
        current = getattr(module, name)
        installed = _INSTALLED.get(key) is not current
        if installed:
            _INSTALLED[key] = new = replacement(current)
            setattr(module, name, new)
    try:
        yield
    finally:
        if installed:
            with _LOCK:
                setattr(module, name, current)
                _INSTALLED.pop(key, None)
