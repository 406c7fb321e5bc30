"""The lake's commands: materialize, rebuild, rollback, lake maintenance, history, show, diff, sql.

`memlake materialize [--follow]`        land then materialize (follow: micro-batches until SIGTERM)
`memlake rebuild --verify`              replay the log into fresh tables and compare with the live ones
`memlake rollback CUBE --to-version N`  emit cube.rolled_back (the rollback is itself a new version)
`memlake lake restore TABLE --version V` rewind a derived table (its watermark too: the next run repairs)
`memlake lake compact|checkpoint|vacuum|retention`
`memlake history MEMORY_ID`, `memlake show CUBE [--as-of VERSION|TIMESTAMP]`, `memlake diff CUBE V1 V2`
`memlake sql "SELECT ..." [--as-of VERSION|TIMESTAMP] [--out file.parquet|file.csv]`
Beam options go after `--` (e.g. `-- --direct_num_workers=2 --direct_running_mode=multi_processing`).
"""

from __future__ import annotations

import argparse
import json
import signal
import sys
import threading
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from memlake.cli import arguments
from memlake.errors import CubeNotFoundError, InfrastructureError, PermissionDeniedError, RollbackTargetError
from memlake.settings import Settings


def register(commands: Any) -> None:
    materialize = commands.add_parser(
        "materialize", help="land new events and materialize the derived tables"
    )
    materialize.add_argument(
        "--follow", action="store_true", help="keep going in micro-batches until SIGTERM"
    )
    materialize.add_argument("beam_args", nargs=argparse.REMAINDER, help="Beam pipeline options after --")
    materialize.set_defaults(run=_materialize)

    rebuild = commands.add_parser("rebuild", help="replay the log into fresh tables (and compare)")
    rebuild.add_argument("--verify", action="store_true", help="compare every table with the live one")
    rebuild.add_argument(
        "--into",
        help="where to build (default: a folder under the lake root, deleted after from a folder or s3://)",
    )
    rebuild.add_argument("--keep", action="store_true", help="keep the rebuilt tables")
    rebuild.add_argument("beam_args", nargs=argparse.REMAINDER, help="Beam pipeline options after --")
    rebuild.set_defaults(run=_rebuild)

    rollback = commands.add_parser("rollback", help="roll a cube back to one of its versions (an event)")
    rollback.add_argument("cube_id")
    rollback.add_argument(
        "--to-version", type=arguments.cube_version, required=True, help="a version the cube has in the lake"
    )
    rollback.add_argument("--reason")
    rollback.add_argument(
        "--actor",
        type=arguments.principal,
        default="system:memlake-cli",
        help="principal kind:id emitting it",
    )
    rollback.set_defaults(run=_rollback)

    lake = commands.add_parser("lake", help="table maintenance and repair")
    actions = lake.add_subparsers(dest="action", required=True, metavar="ACTION")
    restore = actions.add_parser(
        "restore", help="rewind a derived table to a version (the next run repairs it)"
    )
    restore.add_argument("table")
    restore.add_argument("--version", type=int, required=True)
    restore.set_defaults(run=_restore)
    leases = actions.add_parser("leases", help="who holds the lake's leases (writer, compaction) until when")
    leases.set_defaults(run=_leases)
    for name, help_text in (
        ("compact", "rewrite small files into large ones (Z-ordered by cube)"),
        ("checkpoint", "write log checkpoints and drop expired log files"),
        ("vacuum", "delete files older than the rollback window that no version needs"),
        ("retention", "apply the retention settings to existing tables"),
    ):
        action = actions.add_parser(name, help=help_text)
        action.add_argument("--table", action="append", help="only this table (repeatable)")
        if name == "vacuum":
            action.add_argument("--dry-run", action="store_true")
        action.set_defaults(run=_maintain, maintenance=name)

    history = commands.add_parser("history", help="every version of one memory, with its events")
    history.add_argument("memory_id")
    history.add_argument("--cube", help="the memory's cube (faster)")
    history.add_argument("--json", action="store_true")
    history.set_defaults(run=_history)

    show = commands.add_parser("show", help="a cube and its memories, now or as of a version or time")
    show.add_argument("cube_id")
    show.add_argument(
        "--as-of", type=arguments.as_of, help="a cube version (integer) or an ISO timestamp with timezone"
    )
    show.add_argument("--all", action="store_true", help="include deleted memories")
    show.add_argument("--json", action="store_true")
    show.set_defaults(run=_show)

    diff = commands.add_parser("diff", help="what changed in a cube between two versions")
    diff.add_argument("cube_id")
    diff.add_argument("v1", type=arguments.cube_version)
    diff.add_argument("v2", type=arguments.cube_version)
    diff.set_defaults(run=_diff)

    sql = commands.add_parser("sql", help="SQL over the lake tables (DuckDB)")
    sql.add_argument("query")
    sql.add_argument(
        "--as-of", type=arguments.as_of, help="an events-table version (integer) or an ISO timestamp"
    )
    sql.add_argument("--out", type=Path, help="write the result to .parquet or .csv instead of printing")
    sql.add_argument("--limit", type=arguments.count, default=50, help="rows to print")
    sql.set_defaults(run=_sql)


def _beam_args(args: argparse.Namespace) -> list[str]:
    extra: list[str] = list(getattr(args, "beam_args", []) or [])
    return extra[1:] if extra[:1] == ["--"] else extra


def _materialize(settings: Settings, args: argparse.Namespace) -> int:
    from pipelines.follow import Progress, run_jobs

    stop = threading.Event()

    def on_signal(signum: int, _frame: Any) -> None:
        print(
            f"memlake: {signal.Signals(signum).name}: stopping after this batch", file=sys.stderr, flush=True
        )
        stop.set()

    previous = {sig: signal.signal(sig, on_signal) for sig in (signal.SIGTERM, signal.SIGINT)}

    def report(progress: Progress) -> None:
        print(progress.line(), flush=True)

    try:
        done = run_jobs(settings, follow=args.follow, stop=stop, beam_args=_beam_args(args), report=report)
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
    print(f"done: {done.line()}", flush=True)
    return 0


def _rebuild(settings: Settings, args: argparse.Namespace) -> int:
    from pipelines.rebuild import run_rebuild

    result = run_rebuild(
        settings,
        into=args.into,
        verify=args.verify,
        keep=args.keep,
        beam_args=_beam_args(args),
        progress=lambda line: print(line, flush=True),
    )
    print(f"rebuilt {result.events} events in {result.seconds:.1f} s (live cut: events v{result.watermark})")
    if result.kept:
        print(f"rebuilt tables at {result.root}")
    for d in result.differences:
        status = "equal" if d.equal else "DIFFERENT"
        print(f"  {d.table:16} {status:9} live {d.rows_left} rows, rebuilt {d.rows_right} rows")
        if not d.equal:
            print(f"    only live {d.only_left}, only rebuilt {d.only_right}, changed {d.changed}")
            for note in d.samples:
                print(f"    {note}")
    return 0 if result.equal else 1


def _rollback(settings: Settings, args: argparse.Namespace) -> int:
    from lake.tables import Lake
    from lake.time_travel import current_cube
    from memlake.cli.broker import lake_lag
    from memlake.events import CubeRolledBack, CubeRolledBackPayload, new_event
    from memlake.fold import permits
    from streams.producer import EventProducer

    # Checked against the lake before anything is emitted, by the fold's own rules: an event
    # the fold would refuse is only a line in `rejected` after the next materialize, long
    # after the operator left. The lake may lag the log, but a target is one the operator
    # saw there (`memlake show`); a refusal says when the lag may be why.
    cube = current_cube(Lake(settings.lake), args.cube_id)
    try:
        if cube is None:
            raise CubeNotFoundError(args.cube_id)
        if not permits(cube, args.actor, cube.policy.rollback_by):
            raise PermissionDeniedError(args.cube_id, principal=args.actor.principal, action="roll back")
        if args.to_version > cube.version:
            raise RollbackTargetError(args.cube_id, to_version=args.to_version, current=cube.version)
    except (CubeNotFoundError, RollbackTargetError):
        try:
            lag = lake_lag(settings)
        except InfrastructureError:
            lag = None  # only a hint: Kafka or the store away does not change the refusal
        if lag is not None and not lag.caught_up:
            print(f"memlake: note: {lag.line()}", file=sys.stderr)
        raise
    payload = CubeRolledBackPayload(to_version=args.to_version, reason=args.reason)
    event = new_event(CubeRolledBack, cube_id=args.cube_id, actor=args.actor, payload=payload)
    with EventProducer(settings.kafka) as producer:
        (delivery,) = producer.send(event)
    print(
        f"emitted cube.rolled_back {delivery.event_id} for {args.cube_id} to version {args.to_version} "
        f"at partition {delivery.partition} offset {delivery.offset}; it applies at the next materialize"
    )
    return 0


def _restore(settings: Settings, args: argparse.Namespace) -> int:
    from lake.maintenance import restore
    from lake.tables import Lake

    report = restore(Lake(settings.lake), args.table, version=args.version)
    print(
        f"restored {report.table} to version {args.version}; its watermark is now events "
        f"v{report.details['watermark']}: the next `memlake materialize` re-applies what followed"
    )
    return 0


def _leases(settings: Settings, args: argparse.Namespace) -> int:
    from lake.lease import lease_state
    from lake.maintenance import COMPACTION_LEASE
    from lake.tables import Lake
    from pipelines.writer_lease import WRITER_LEASE

    lake = Lake(settings.lake)
    now = datetime.now(UTC)
    for name in (WRITER_LEASE, COMPACTION_LEASE):
        state = lease_state(lake, name)
        if state.holder is None or state.expires_at is None:
            print(f"{name}: free")
            continue
        until = state.expires_at.isoformat(timespec="seconds")
        if state.expires_at <= now:
            print(f"{name}: free (expired {until}, held by {state.holder})")
        else:
            print(f"{name}: held by {state.holder} until {until}")
    return 0


def _maintain(settings: Settings, args: argparse.Namespace) -> int:
    from lake import maintenance
    from lake.tables import Lake

    lake = Lake(settings.lake)
    tables = args.table
    if args.maintenance == "vacuum":
        reports = maintenance.vacuum(lake, tables, dry_run=args.dry_run)
    else:
        reports = getattr(
            maintenance, {"retention": "apply_retention"}.get(args.maintenance, args.maintenance)
        )(lake, tables)
    for report in reports:
        print(f"{report.action} {report.table}: {json.dumps(report.details, default=str)}")
    return 0


def _history(settings: Settings, args: argparse.Namespace) -> int:
    from lake.history import memory_history
    from lake.tables import Lake

    versions = memory_history(Lake(settings.lake), args.memory_id, cube_id=args.cube)
    if not versions:
        print(f"no memory {args.memory_id!r}", file=sys.stderr)
        return 1
    for v in versions:
        m = v.memory
        if args.json:
            print(
                json.dumps({"event_id": v.event_id, "event_type": v.event_type, **m.model_dump(mode="json")})
            )
            continue
        text = m.content.text if m.content and m.content.text else ("<sealed>" if m.content else "")
        print(
            f"v{v.version:<3} cube v{m.cube_version:<5} {m.status.value:9} {v.event_type or '':20} "
            f"{m.header.updated_at.isoformat()} {text[:60]!r}"
        )
    return 0


def _show(settings: Settings, args: argparse.Namespace) -> int:
    from lake.tables import Lake
    from lake.time_travel import as_of, current

    lake = Lake(settings.lake)
    moment = args.as_of
    if moment is None:
        view = current(lake, args.cube_id)
    elif isinstance(moment, int):
        view = as_of(lake, args.cube_id, version=moment)
    else:
        view = as_of(lake, args.cube_id, timestamp=moment)
    if view.cube is None:
        print(f"no cube {args.cube_id!r}", file=sys.stderr)
        return 1
    memories = view.memories if args.all else view.visible()
    if args.json:
        print(
            json.dumps(
                {
                    "cube": view.cube.model_dump(mode="json"),
                    "version": view.version,
                    "memories": {k: m.model_dump(mode="json") for k, m in memories.items()},
                }
            )
        )
        return 0
    cube = view.cube
    print(f"{cube.cube_id} ({cube.name}) at version {view.version}; owner {cube.owner}")
    for memory in memories.values():
        text = memory.content.text if memory.content and memory.content.text else ""
        print(f"  {memory.memory_id:32} v{memory.version:<3} {memory.status.value:9} {text[:70]!r}")
    return 0


def _diff(settings: Settings, args: argparse.Namespace) -> int:
    from lake.history import diff
    from lake.tables import Lake

    d = diff(Lake(settings.lake), args.cube_id, args.v1, args.v2)
    print(f"{args.cube_id}: version {args.v1} -> {args.v2}")
    for field in d.cube_fields:
        print(f"  cube {field} changed")
    for memory in d.added:
        print(f"  + {memory.memory_id}")
    for memory in d.removed:
        print(f"  - {memory.memory_id}")
    for change in d.changed:
        print(f"  ~ {change.memory_id}: {', '.join(change.fields)}")
    if d.empty:
        print("  (no difference)")
    return 0


def _sql(settings: Settings, args: argparse.Namespace) -> int:
    from lake.sql import query, write_result
    from lake.tables import Lake

    result = query(Lake(settings.lake), args.query, as_of=args.as_of)
    if args.out:
        write_result(result, args.out)
        print(f"wrote {result.num_rows} rows to {args.out}")
        return 0
    print(" | ".join(result.column_names))
    for row in result.slice(0, args.limit).to_pylist():
        print(" | ".join("" if v is None else str(v) for v in row.values()))
    if result.num_rows > args.limit:
        print(f"... {result.num_rows - args.limit} more rows (use --out or --limit)")
    return 0
