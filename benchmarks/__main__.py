"""`python -m benchmarks run|report|list` (`make bench`, `make bench-report`).

`run --profile quick|full|tiny [--only NAME ...]` runs every benchmark of the
profile (or those named), records each under `benchmarks/results/<profile>/`,
then rewrites BENCHMARKS.md from every result recorded for that profile.
`report --profile P` rewrites BENCHMARKS.md from the recorded results alone,
running nothing. A benchmark that fails is reported (its traceback in
BENCHMARKS.md) and the others still run; the exit status is 1 when any failed.
"""

from __future__ import annotations

import argparse
import os
import shlex
import sys
from collections.abc import Sequence
from pathlib import Path

from benchmarks._machine import describe_machine, package_versions
from benchmarks._report import write_report
from benchmarks._runner import PROFILES, discover, run_benchmarks, run_in_process
from lake.allocator import configure_delta_allocator
from memlake.settings import Settings

_REPO = Path(__file__).resolve().parents[1]


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m benchmarks", description=__doc__.split("\n")[0])
    commands = parser.add_subparsers(dest="command", required=True)
    run = commands.add_parser("run", help="run benchmarks, then rewrite BENCHMARKS.md")
    report = commands.add_parser("report", help="rewrite BENCHMARKS.md from the recorded results only")
    for sub in (run, report):
        sub.add_argument("--profile", choices=PROFILES, default="quick")
        sub.add_argument("--results", type=Path, default=_REPO / "benchmarks" / "results")
        sub.add_argument("--markdown", type=Path, default=_REPO / "BENCHMARKS.md", help="the file to rewrite")
    run.add_argument("--only", action="append", default=[], metavar="NAME", help="run only this benchmark")
    run.add_argument("--no-markdown", action="store_true", help="record results only")
    run.add_argument("--in-process", action="store_true", help="no child process per benchmark")
    commands.add_parser("list", help="name every benchmark")
    one = commands.add_parser("one", help=argparse.SUPPRESS)
    one.add_argument("name")
    one.add_argument("--profile", choices=PROFILES, required=True)
    one.add_argument("--out", type=Path, required=True)
    one.add_argument("--package", default="benchmarks")
    one.add_argument(
        "--command", dest="recorded_command", default=None, help="the command to record (default: this one)"
    )
    return parser


def _write_report(profile: str, results: Path, markdown: Path) -> None:
    outcomes = write_report(
        profile,
        results_root=results,
        markdown=markdown,
        known=discover(),
        machine=describe_machine().as_dict(),
        versions=package_versions(),
    )
    print(f"[bench] wrote {markdown} from {len(outcomes)} recorded {profile} result(s)")


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    command = "python -m benchmarks " + shlex.join(sys.argv[1:] if argv is None else list(argv))
    if args.command == "list":
        print("\n".join(discover()))
        return 0
    if args.command == "report":
        _write_report(args.profile, args.results, args.markdown)
        return 0
    # Benchmarks never fetch weights from a model hub.
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
    # As the `memlake` command does, so that jobs run here behave as they do there.
    configure_delta_allocator(Settings().lake)
    if args.command == "one":
        outcome = run_in_process(
            args.name,
            args.profile,
            args.out,
            package=args.package,
            command=command if args.recorded_command is None else args.recorded_command,
        )
        return 0 if outcome.status == "ok" else 1
    only = [name for item in args.only for name in item.split(",") if name]
    try:
        record = run_benchmarks(
            args.profile, results_root=args.results, only=only, isolate=not args.in_process, command=command
        )
    except ValueError as e:
        print(f"benchmarks: {e}", file=sys.stderr)
        return 2
    if not args.no_markdown:
        _write_report(args.profile, args.results, args.markdown)
    failed = [o.name for o in record.outcomes if o.status != "ok"]
    if failed:
        print(f"[bench] failed: {', '.join(failed)}", file=sys.stderr)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
