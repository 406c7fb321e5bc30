"""`memlake ingest | tail | dlq`: write events in bulk, watch the log, read the dead letters."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

from memlake.cli import arguments
from memlake.settings import Settings


def register(commands: Any) -> None:
    ingest = commands.add_parser(
        "ingest",
        help="send a JSON Lines file of events (full events or compact lines) to the log",
        description="Send a JSON Lines file to the event log. Invalid lines are reported with their "
        "line number and reason and go to the dead-letter topic; the others are sent.",
    )
    ingest.add_argument("file", type=Path, help="the .jsonl file")
    ingest.add_argument(
        "--actor",
        type=arguments.principal,
        default="service:ingest",
        help="kind:id of the writer, or a user's id (default %(default)s)",
    )
    ingest.add_argument("--product", default="memlake-ingest", help="source product recorded on each event")
    ingest.set_defaults(run=_ingest)

    tail = commands.add_parser("tail", help="print events as they arrive, readably")
    tail.add_argument("--from-beginning", action="store_true", help="start at the first event of the log")
    tail.add_argument("--cube", help="only this cube's events")
    tail.add_argument("--max", type=arguments.count, metavar="N", help="stop after N events")
    tail.add_argument(
        "--idle", type=arguments.seconds, metavar="SECONDS", help="stop when nothing arrived for this long"
    )
    tail.add_argument(
        "--open",
        action="store_true",
        help="decrypt sealed content with the local key store (if its key exists)",
    )
    tail.set_defaults(run=_tail)

    dlq = commands.add_parser("dlq", help="list the dead letters with their reasons")
    dlq.add_argument("--last", type=arguments.count, metavar="N", help="only the last N")
    dlq.set_defaults(run=_dlq)


def _ingest(settings: Settings, args: argparse.Namespace) -> int:
    from streams.sdk import MemlakeClient

    if not args.file.is_file():
        print(f"memlake: error: {args.file} is not a file", file=sys.stderr)
        return 2
    with MemlakeClient(settings, actor=args.actor, product=args.product) as client:
        report = client.ingest(args.file)
    print(report)
    return 0 if report.ok else 1


def _tail(settings: Settings, args: argparse.Namespace) -> int:
    from streams.sealing import LocalKeyStore, Sealer
    from streams.tail import follow, format_tailed

    opener = Sealer(LocalKeyStore(settings.governance.key_store)).open if args.open else None
    for tailed in follow(
        settings.kafka,
        from_beginning=args.from_beginning,
        cube_id=args.cube,
        max_events=args.max,
        idle_timeout_s=args.idle,
    ):
        print(format_tailed(tailed, opener=opener), flush=True)
    return 0


def _dlq(settings: Settings, args: argparse.Namespace) -> int:
    from streams.dead_letters import read_dead_letters
    from streams.tail import format_dead_letter

    letters = read_dead_letters(settings.kafka)
    shown = letters[-args.last :] if args.last else letters
    for letter in shown:
        print(format_dead_letter(letter))
    print(f"{len(letters)} dead letters on {settings.kafka.dlq_topic}")
    return 0
