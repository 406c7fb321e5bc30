"""Maintenance: compaction, checkpoints, vacuum within the rollback window, retention, restore.

Micro-batches make many small files and many commits; both make tables slow
to open and read. `compact` rewrites small files into large ones (Z-ordered
by cube for the tables read per cube), `checkpoint` writes a Parquet
checkpoint of the log so that opening a table does not replay every JSON
commit, and `vacuum` deletes files no version inside the rollback window
still needs. None of them changes what a table holds, and none breaks the
rollback window: vacuum keeps every file a version younger than
`rollback_window_hours` reads, and the log itself is kept at least as long.

`restore` rewinds a derived table to an older version of itself, and its
watermark with it, so the next materialize run re-applies what followed:
a repair, not a way to forget (for that, roll a cube back with an event).
"""

from __future__ import annotations

__all__ = ["MaintenanceReport", "compact", "checkpoint", "vacuum", "restore", "apply_retention"]

from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from lake.lease import Lease
from lake.schemas import TABLES
from lake.tables import WATERMARK_KEY, Lake, delta_errors, materialize_app_id
from memlake.errors import LakeError

COMPACTION_LEASE = "compact"  # the lake's lease every compaction takes first
# Tables read per cube: compaction clusters their rows by cube.
_Z_ORDER: dict[str, list[str]] = {
    "events": ["cube_id"],
    "memories": ["cube_id"],
    "memory_versions": ["cube_id"],
    "cube_versions": ["cube_id"],
}


@dataclass(frozen=True)
class MaintenanceReport:
    table: str
    action: str
    details: dict[str, Any] = field(default_factory=dict)


def _names(tables: Iterable[str] | None) -> list[str]:
    return list(TABLES) if tables is None else list(tables)


def compact(
    lake: Lake, tables: Iterable[str] | None = None, *, z_order: bool = True
) -> list[MaintenanceReport]:
    """Rewrite small files into files of `target_file_mb` (data unchanged, dataChange=false).

    Under the lake's lease `compact` (lake.lease): two compactions of the same files would
    both commit, and the table would hold their rows twice. `LeaseHeldError` when another
    compaction holds it.
    """
    reports = []
    target = lake.settings.target_file_mb * 1024 * 1024
    lease = Lease(lake, COMPACTION_LEASE, seconds=lake.settings.compaction_lease_s)
    with lease.held():
        for name in _names(tables):
            lease.renew()
            dt = lake.table(name)
            with delta_errors(name):
                columns = _Z_ORDER.get(name) if z_order else None
                if columns:
                    metrics = dt.optimize.z_order(columns, target_size=target)
                else:
                    metrics = dt.optimize.compact(target_size=target)
            reports.append(MaintenanceReport(name, "compact", dict(metrics)))
    return reports


def checkpoint(lake: Lake, tables: Iterable[str] | None = None) -> list[MaintenanceReport]:
    """Write a checkpoint of each table's log and drop log files past the log retention."""
    reports = []
    for name in _names(tables):
        dt = lake.table(name)
        with delta_errors(name):
            dt.create_checkpoint()
            dt.cleanup_metadata()
        reports.append(MaintenanceReport(name, "checkpoint", {"version": int(dt.version())}))
    return reports


def vacuum(
    lake: Lake, tables: Iterable[str] | None = None, *, dry_run: bool = False
) -> list[MaintenanceReport]:
    """Delete files that no version inside the rollback window reads (a dry run lists them)."""
    reports = []
    hours = lake.settings.rollback_window_hours
    for name in _names(tables):
        dt = lake.table(name)
        with delta_errors(name):
            removed = dt.vacuum(retention_hours=hours, dry_run=dry_run, enforce_retention_duration=True)
        reports.append(
            MaintenanceReport(
                name, "vacuum", {"files": len(removed), "dry_run": dry_run, "retention_hours": hours}
            )
        )
    return reports


def apply_retention(lake: Lake, tables: Iterable[str] | None = None) -> list[MaintenanceReport]:
    """Bring existing tables' retention properties in line with the settings."""
    reports = []
    for name in _names(tables):
        dt = lake.table(name)
        properties = {k: v for k, v in lake.configuration().items() if v is not None}
        properties.pop("delta.enableChangeDataFeed", None)  # set at creation; never turned off
        with delta_errors(name):
            dt.alter.set_table_properties(properties, raise_if_not_exists=False)
        reports.append(MaintenanceReport(name, "retention", properties))
    return reports


def restore(lake: Lake, name: str, *, version: int) -> MaintenanceReport:
    """Rewind a derived table to one of its versions; its materialize watermark goes back too.

    delta-rs keeps the newest transaction id when restoring, so the watermark the
    old version had is written into the restore commit explicitly.
    """
    from deltalake import CommitProperties, Transaction

    if name == "events":
        raise LakeError(
            name,
            "the events table is the landed log and is not restored: derived tables are "
            "repaired from it, and the log itself lives in Kafka",
        )
    table = lake.spec(name)
    dt = lake.table(name)
    latest = int(dt.version())
    if not 0 <= version <= latest:
        raise LakeError(name, f"has versions 0..{latest}, not {version}")
    old = lake.table(name, version=version)
    mark = lake.watermark(name, dt=old)
    properties = CommitProperties(
        app_transactions=[Transaction(materialize_app_id(table.name), mark)],
        custom_metadata={WATERMARK_KEY: str(mark)},
    )
    # delta-rs refuses a restore that another commit overtook with a bare message: the
    # table's version tells.
    with delta_errors(name, started_at=lambda: (latest, lake.version(name))):
        metrics = dt.restore(version, commit_properties=properties)
    return MaintenanceReport(name, "restore", {"to_version": version, "watermark": mark, **dict(metrics)})
