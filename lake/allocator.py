"""How long delta-rs keeps the memory it freed before giving it back to the system.

delta-rs allocates with its own jemalloc, which by default holds freed pages for
ten seconds in case they are needed again. A MERGE of a micro-batch into
`memories` builds its join in that allocator; pyarrow, DuckDB and Python each
allocate from their own, so what delta-rs holds is memory nobody else can use.
Merging a 19,147-row batch into the 466,158-row `memories` of the 1M-event
rebuild: the process peaked at +0.62-0.79 GiB and still held 0.76-0.98 GiB
afterwards (from 0.23 before). With a 200 ms decay and jemalloc's background
thread returning the pages, it held 0.29 GiB 0.2 s after, in the same time
(5.3 s against 4.8-5.3 s); a decay of 0 also lowered the peak (+0.52 GiB) but
doubled the MERGE's time (9.8-10.6 s: every free returns its pages at once).

jemalloc reads its configuration once, when the library is loaded, from the
`_RJEM_MALLOC_CONF` environment variable: so this runs at the entry point, before
anything imports `deltalake`, and a configuration the operator set is left alone.
"""

from __future__ import annotations

__all__ = ["DELTA_MALLOC_CONF", "configure_delta_allocator", "delta_malloc_conf"]

import os
import sys
from collections.abc import MutableMapping

from memlake.settings import LakeSettings

DELTA_MALLOC_CONF = "_RJEM_MALLOC_CONF"


def delta_malloc_conf(settings: LakeSettings) -> str | None:
    """jemalloc's configuration for `settings.allocator_decay_ms` (None: jemalloc's own)."""
    ms = settings.allocator_decay_ms
    if ms < 0:
        return None
    # The background thread returns pages as they expire, so no later allocation pays for it.
    return f"background_thread:true,dirty_decay_ms:{ms},muzzy_decay_ms:{ms}"


def configure_delta_allocator(
    settings: LakeSettings,
    environ: MutableMapping[str, str] = os.environ,
    loaded: frozenset[str] | None = None,
) -> str:
    """Set delta-rs' allocator configuration for this process; says what was done.

    Too late once `deltalake` is loaded (the configuration is read then), and not
    done when the operator set `_RJEM_MALLOC_CONF` themselves.
    """
    modules = loaded if loaded is not None else frozenset(sys.modules)
    if DELTA_MALLOC_CONF in environ:
        return f"left as set: {DELTA_MALLOC_CONF}={environ[DELTA_MALLOC_CONF]}"
    conf = delta_malloc_conf(settings)
    if conf is None:
        return "jemalloc's default"
    if "deltalake" in modules:
        return "too late: deltalake is already loaded"
    environ[DELTA_MALLOC_CONF] = conf
    return f"set: {DELTA_MALLOC_CONF}={conf}"
