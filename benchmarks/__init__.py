"""Reproducible measurements of memlake: `python -m benchmarks run --profile quick` (`make bench`).

A benchmark is a module `benchmarks/<name>.py` (not a package, not `_private`)
with a function `run(profile: str, out_dir: Path) -> dict`:

- `profile` is `tiny` (seconds; CI runs it so no benchmark rots), `quick`
  (`make bench`: every benchmark together in under 20 minutes on a 2-core
  machine) or `full` (the large sizes).
- `out_dir` is the benchmark's own folder for tables, plots and raw data.
- The returned dict is JSON-able. The runner renders it into BENCHMARKS.md:
  `summary` (one line of text) and `markdown` (a Markdown block, e.g. a table)
  are shown as they are; every other scalar is listed under its dotted key.
  Each benchmark measures its baseline in the same run and returns the ratio
  under a key that names it: `ratio`, `*_ratio` or `ratio_*` (e.g.
  `ratio_vs_bm25`, `speedup_ratio`); those are shown in the summary table.
"""
