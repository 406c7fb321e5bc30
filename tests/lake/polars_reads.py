"""Run by `infra.delta_readers.PolarsReader`: read Delta tables with Polars, and write each read as Parquet.

Arguments: a JSON list of reads, each `{"name", "path", "options"}` (options of
`polars.read_delta`: `version`), and the folder to write them to, one Parquet
file per read, named after it. Not a test module: it runs in its own process,
with Polars on its path.
"""

from __future__ import annotations

import json
import os
import sys

import polars as pl


def main(reads: str, out: str) -> None:
    os.makedirs(out, exist_ok=True)
    for read in json.loads(reads):
        pl.read_delta(read["path"], **read["options"]).write_parquet(os.path.join(out, read["name"]))
        print(read["name"], flush=True)


if __name__ == "__main__":
    main(*sys.argv[1:])
