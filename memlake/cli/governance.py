"""Governance commands: consolidate, audit, verify, erase.

`memlake consolidate [--dry-run] [--cube C] [--as-of T] [--full]`   the scheduled lifecycle job
`memlake audit CUBE [--since T] [--principal P] [--json]`         who read or changed what, and when
`memlake verify CUBE`                                              the cube's hash chain, Kafka vs lake
`memlake erase SUBJECT [--actor P] [--apply]`                      crypto-shred a subject everywhere
Beam options for consolidate go after `--`.

This module wires the layers: the embedder (serving) is handed to the
consolidation job (pipelines) as a factory, the erasure reaches the index
(serving) and the artifacts (training) through their own functions.
"""

from __future__ import annotations

import argparse
import dataclasses
import functools
import json
import sys
from typing import TYPE_CHECKING, Any

from memlake.cli import arguments
from memlake.model import utcnow
from memlake.settings import ModelSettings, Settings

if TYPE_CHECKING:
    from pipelines.vectors import Embed


def minilm_embed(models: ModelSettings) -> Embed:
    """The configured sentence embedder's `embed` (all-MiniLM-L6-v2 by default); loads lazily."""
    from serving.embeddings import SentenceTransformerEmbedder

    embedder = SentenceTransformerEmbedder(
        models.embedder,
        dim=models.embedding_dim,
        batch_size=models.embed_batch_size,
        max_tokens=models.embed_max_tokens,
        threads=models.embed_threads,
        cache_size=0,
    )
    return embedder.embed


def embed_factory(settings: Settings) -> functools.partial[Embed]:
    return functools.partial(minilm_embed, settings.models)


def register(commands: Any) -> None:
    consolidate = commands.add_parser(
        "consolidate",
        help="expire, archive, merge and pick hot memories (meant for a schedule)",
        description="Decide on the newest lake snapshot and emit the decisions as events "
        "(system:consolidate). Running it twice on one snapshot sends nothing the second time.",
    )
    consolidate.add_argument("--dry-run", action="store_true", help="print what it would do, write nothing")
    consolidate.add_argument("--cube", help="only this cube")
    consolidate.add_argument(
        "--as-of", type=arguments.timestamp, help="decide as of this time (default: now)"
    )
    consolidate.add_argument(
        "--full", action="store_true", help="compare every pair of memories, not only pairs with a new one"
    )
    consolidate.add_argument(
        "--verbose", action="store_true", help="print every decision sent (a dry run always does)"
    )
    consolidate.add_argument("beam_args", nargs=argparse.REMAINDER, help="Beam pipeline options after --")
    consolidate.set_defaults(run=_consolidate)

    audit = commands.add_parser(
        "audit", help="who read or changed what in a cube, and when (from the lake's events table)"
    )
    audit.add_argument("cube_id")
    audit.add_argument("--since", type=arguments.timestamp, help="only events logged at or after this time")
    audit.add_argument("--principal", help="only this actor (kind:id)")
    audit.add_argument("--json", action="store_true", help="one JSON object per line")
    audit.set_defaults(run=_audit)

    verify = commands.add_parser(
        "verify", help="recompute a cube's hash chain from Kafka and from the lake; report any tampering"
    )
    verify.add_argument("cube_id")
    verify.add_argument("--json", action="store_true")
    verify.set_defaults(run=_verify)

    erase = commands.add_parser(
        "erase",
        help="crypto-shred a subject: destroy their key, emit subject.erased, drop derived copies",
        description="Destroy the subject's data key and emit subject.erased in every cube holding content "
        "about them; drop consolidation's vectors and hot rows, the index rows, the KV caches built from "
        "them, and withdraw the adapters trained on them.",
    )
    erase.add_argument("subject_id")
    erase.add_argument(
        "--actor",
        type=arguments.principal,
        default="system:erasure",
        help="principal kind:id asking (checked against each cube's erase_by)",
    )
    erase.add_argument("--dry-run", action="store_true", help="show the footprint, change nothing")
    after = erase.add_mutually_exclusive_group()
    after.add_argument(
        "--materialize",
        action="store_true",
        help="land and materialize now, then vacuum (one machine); while a follower is the lake's "
        "writer, wait up to 120 s for it instead",
    )
    after.add_argument(
        "--wait",
        type=arguments.seconds,
        metavar="SECONDS",
        help="wait for the running materializer, then vacuum",
    )
    erase.set_defaults(run=_erase)


def _beam_args(args: argparse.Namespace) -> list[str]:
    extra = list(args.beam_args or [])
    return extra[1:] if extra[:1] == ["--"] else extra


def _consolidate(settings: Settings, args: argparse.Namespace) -> int:
    from pipelines.consolidate import run_consolidate

    report = run_consolidate(
        settings,
        embed_factory(settings),
        as_of=args.as_of or utcnow(),
        cube_id=args.cube,
        full=args.full,
        dry_run=args.dry_run,
        beam_args=_beam_args(args),
    )
    if report.watermark < 0:
        print("the lake holds no snapshot yet: run `memlake materialize` first", file=sys.stderr)
        return 0
    if report.dry_run or args.verbose:
        for line in report.actions:
            print(("would " if report.dry_run else "") + line)
    print(report.summary())
    return 0


def _audit(settings: Settings, args: argparse.Namespace) -> int:
    from lake.tables import Lake
    from pipelines.audit import audit

    entries = audit(Lake(settings.lake), args.cube_id, since=args.since, principal=args.principal)
    for entry in entries:
        if args.json:
            record = dataclasses.asdict(entry)
            print(json.dumps(record, default=str, sort_keys=True))
        else:
            print(entry.line())
    if not args.json:
        print(f"{len(entries)} events of cube {args.cube_id}")
    return 0


def _verify(settings: Settings, args: argparse.Namespace) -> int:
    from pipelines.verify import verify_cube

    report = verify_cube(settings, args.cube_id)
    if args.json:
        record = dataclasses.asdict(report)
        record["ok"] = report.ok
        print(json.dumps(record, default=str, sort_keys=True))
    else:
        for problem in report.discrepancies:
            print(problem)
        print(report.summary())
    return 0 if report.ok else 1


def _erase(settings: Settings, args: argparse.Namespace) -> int:
    from memlake.cli._erase import erase_subject

    report = erase_subject(
        settings,
        args.subject_id,
        actor=args.actor,
        dry_run=args.dry_run,
        materialize=args.materialize,
        wait_s=args.wait,
    )
    for line in report.lines():
        print(line)
    return 0
