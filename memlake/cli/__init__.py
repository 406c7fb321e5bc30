"""The `memlake` command line: the one place (with the service entry points) that wires layers.

Each command group lives in its own module and registers its subcommands;
the settings are read once here and handed to every command.
"""

from __future__ import annotations

__all__ = ["main", "build_parser"]

import argparse
import importlib
import sys
from collections.abc import Sequence

from lake.allocator import configure_delta_allocator
from memlake.errors import MemlakeError
from memlake.settings import read_environment

# Command groups, imported lazily so that `memlake status` does not load torch.
_GROUPS = (
    "memlake.cli.broker",
    "memlake.cli.events",
    "memlake.cli.lake",
    "memlake.cli.serving",
    "memlake.cli.training",
    "memlake.cli.governance",
)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="memlake",
        description="memlake: an event-sourced memory lakehouse for LLMs.",
    )
    commands = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for name in _GROUPS:
        try:
            module = importlib.import_module(name)
        except ModuleNotFoundError as e:
            if e.name == name:  # a group not built yet
                continue
            raise
        module.register(commands)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        settings = read_environment()
        # Before any command loads deltalake: its allocator reads the setting once, then.
        configure_delta_allocator(settings.lake)
        code: int = args.run(settings, args)
    except MemlakeError as e:
        print(f"memlake: error: {e}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 130
    return code


if __name__ == "__main__":
    sys.exit(main())
