"""Freshness through the service: from an API write to the memory being searchable.

Production shape: `memlake serve` (no embedded pipeline) and `memlake
materialize --follow` run as two processes. This process writes memories
through `POST /v1/cubes/{cube}/memories` at a steady rate, and for every
write records when it (a) is visible in the lake's `memories` table (the
baseline, measured in the same run: what the materializer alone achieves)
and (b) is returned by `POST /v1/search` (a lexical search for the
memory's unique token; the keeper indexes a memory before it publishes the
snapshot holding it, so dense search finds it from the same moment).
Separately, the read-your-writes wait: how long `consistency=wait` blocks.
"""

from __future__ import annotations

import signal
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

import httpx

from benchmarks._lake_bench import percentile, subprocess_env
from benchmarks._serving_bench import ServerProcess, free_port, serving_settings
from lake.snapshot import open_snapshot
from lake.tables import Lake
from memlake.errors import LakeError

# writes per second, seconds of writing, read-your-writes samples (each waits for a Beam round:
# ~3-4 s here, so quick takes 6)
_PROFILES = {"tiny": (2.0, 3.0, 2), "quick": (4.0, 20.0, 6), "full": (10.0, 120.0, 30)}


def _token(i: int) -> str:
    return f"zqx{i:05d}"


def run(profile: str, out_dir: Path) -> dict[str, Any]:
    rate, seconds, ryw_samples = _PROFILES[profile]
    settings = serving_settings(out_dir)
    env = subprocess_env(settings)
    follower = subprocess.Popen(
        [sys.executable, "-m", "memlake", "materialize", "--follow"],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    server = ServerProcess(settings, out_dir, port=free_port(), embedded_pipeline=False)
    written: dict[str, float] = {}
    in_lake: dict[str, float] = {}
    searchable: dict[str, float] = {}
    stop = threading.Event()
    lake = Lake(settings.lake)
    phases: dict[str, float] = {}
    mark = time.monotonic()
    try:
        server.wait_ready()
        client = httpx.Client(base_url=server.base_url, headers=server.headers, timeout=60)
        receipt = client.post("/v1/cubes", json={"name": "freshness"}).json()
        cube = receipt["cube_id"]
        params: dict[str, str | int] = {
            "consistency": "wait",
            "wait_for": f"{receipt['partition']}:{receipt['offset']}",
            "timeout_s": 120,
        }
        assert client.get(f"/v1/cubes/{cube}", params=params).status_code == 200
        phases["start (server, follower, first cube)"], mark = time.monotonic() - mark, time.monotonic()

        def watch_lake() -> None:
            while not stop.is_set():
                try:
                    rows = open_snapshot(lake).read("memories", columns=["text"]).column("text").to_pylist()
                except LakeError:
                    rows = []
                now = time.monotonic()
                for text in rows:
                    if text:
                        in_lake.setdefault(text.rsplit(" ", 1)[-1], now)
                time.sleep(0.05)

        def watch_search() -> None:
            with httpx.Client(base_url=server.base_url, headers=server.headers, timeout=60) as poller:
                while not stop.is_set():
                    pending = [t for t in list(written) if t not in searchable][:20]
                    if pending:
                        result = poller.post(
                            "/v1/search",
                            json={
                                "query": " ".join(pending),
                                "cube_ids": [cube],
                                "top_k": 20,
                                "mode": "lexical",
                            },
                        ).json()
                        now = time.monotonic()
                        for hit in result.get("hits", []):
                            searchable.setdefault(hit["memory"]["text"].rsplit(" ", 1)[-1], now)
                    time.sleep(0.05)

        watchers = [
            threading.Thread(target=watch_lake, daemon=True),
            threading.Thread(target=watch_search, daemon=True),
        ]
        for w in watchers:
            w.start()
        total = int(rate * seconds)
        began = time.monotonic()
        for i in range(total):
            delay = began + i / rate - time.monotonic()
            if delay > 0:
                time.sleep(delay)
            token = _token(i)
            t0 = time.monotonic()
            response = client.post(
                f"/v1/cubes/{cube}/memories", json={"text": f"Freshness probe number {i} {token}"}
            )
            response.raise_for_status()
            written[token] = t0
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline and len(searchable.keys() & written.keys()) < total:
            time.sleep(0.2)
        phases["writes until all searchable"], mark = time.monotonic() - mark, time.monotonic()
        ryw = []
        for i in range(ryw_samples):
            t0 = time.monotonic()
            r = client.post(f"/v1/cubes/{cube}/memories", json={"text": f"Read your write {i}"}).json()
            wait: dict[str, str | int] = {
                "consistency": "wait",
                "wait_for": f"{r['partition']}:{r['offset']}",
                "timeout_s": 120,
            }
            client.get(f"/v1/cubes/{cube}/memories/{r['memory_id']}", params=wait).raise_for_status()
            ryw.append(time.monotonic() - t0)
        phases["read-your-writes samples"], mark = time.monotonic() - mark, time.monotonic()
        client.close()
    finally:
        stop.set()
        follower.send_signal(signal.SIGTERM)  # both stop at once
        server.stop()
        follower.wait(timeout=120)
        phases["stop"] = time.monotonic() - mark
    to_search = [searchable[t] - written[t] for t in written if t in searchable]
    to_lake = [in_lake[t] - written[t] for t in written if t in in_lake]

    def stats(values: list[float]) -> dict[str, float]:
        return {f"p{q}": round(percentile(values, q), 3) for q in (50, 95, 99)}

    search_stats, lake_stats = stats(to_search), stats(to_lake)
    return {
        "summary": (
            f"{rate:g} writes/s for {seconds:.0f} s: write -> searchable p50 {search_stats['p50']} s, "
            f"p95 {search_stats['p95']} s (lake alone p95 {lake_stats['p95']} s); "
            f"read-your-writes wait p95 {round(percentile(ryw, 95), 3)} s"
        ),
        "ratio_search_to_lake_p95": round(search_stats["p95"] / max(1e-9, lake_stats["p95"]), 3),
        "write_to_searchable_s": search_stats,
        "write_to_lake_s": lake_stats,
        "read_your_writes_s": stats(ryw),
        "writes": len(written),
        "searchable": len(to_search),
        "in_lake": len(to_lake),
        "phases_s": {k: round(v, 1) for k, v in phases.items()},
    }
