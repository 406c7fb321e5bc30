"""Sustained throughput: requests/s under concurrent load, from a separate process on loopback.

`memlake serve` runs in one process over a populated lake and index; the
load generator (`_serving_load_client`) runs in another and keeps a fixed
number of requests in flight for a fixed time. Measured: hybrid top-10
search over one random cube (new query texts, so every request embeds its
query), and, as the baseline in the same run, `GET /v1/health` (what the
HTTP stack alone sustains on this machine). Errors are counted (aim: zero).
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

from benchmarks._serving_bench import (
    ComposedEmbedder,
    Corpus,
    ServerProcess,
    free_port,
    peak_rss_mb,
    populate,
    prebuild_index,
    serving_settings,
)
from serving.embeddings import SentenceTransformerEmbedder

# memories, cubes, seconds per measurement, concurrency. Quick populates 3,000 memories: the
# throughput is that of embedding the query and searching one cube (150 memories each), and
# populating and indexing more only lengthened the setup.
_PROFILES = {"tiny": (200, 4, 2.0, 4), "quick": (3_000, 20, 12.0, 8), "full": (100_000, 100, 60.0, 16)}


def _load(
    server: ServerProcess, *, path: str, bodies: list[Any], seconds: float, concurrency: int
) -> dict[str, Any]:
    job = {
        "base_url": server.base_url,
        "key": server.key,
        "path": path,
        "bodies": bodies,
        "seconds": seconds,
        "concurrency": concurrency,
    }
    done = subprocess.run(
        [sys.executable, "-m", "benchmarks._serving_load_client"],
        input=json.dumps(job),
        capture_output=True,
        text=True,
        check=True,
        timeout=seconds + 300,
    )
    result: dict[str, Any] = json.loads(done.stdout)
    return result


def run(profile: str, out_dir: Path) -> dict[str, Any]:
    n, cubes, seconds, concurrency = _PROFILES[profile]
    settings = serving_settings(out_dir)
    corpus = Corpus.make(n)
    setup = populate(settings, corpus, n, cubes=cubes)
    model = SentenceTransformerEmbedder()
    model.load()
    setup["index_s"] = prebuild_index(settings, ComposedEmbedder(model, corpus))
    queries = corpus.queries(5000, seed=3)
    bodies = [
        {"query": f"{q} (#{i})", "cube_ids": [f"bench-{i % cubes}"], "top_k": 10}
        for i, q in enumerate(queries)
    ]
    server = ServerProcess(settings, out_dir, port=free_port())
    try:
        server.wait_ready()
        _load(server, path="/v1/search", bodies=bodies[:50], seconds=2.0, concurrency=2)  # warm-up
        health = _load(server, path="/v1/health", bodies=[], seconds=seconds, concurrency=concurrency)
        search = _load(
            server, path="/v1/search", bodies=bodies[50:], seconds=seconds, concurrency=concurrency
        )
        peak = peak_rss_mb(server.process.pid)
    finally:
        server.stop()
    ratio = search["rps"] / max(1e-9, health["rps"])
    return {
        "summary": (
            f"{concurrency} in flight for {seconds:.0f} s over {n:,} memories: search {search['rps']} req/s "
            f"(p95 {search['latency_ms']['p95']} ms, {search['errors']} errors); health {health['rps']} req/s"
        ),
        "ratio_search_to_health_rps": round(ratio, 3),
        "search": search,
        "health": health,
        "memories": n,
        "concurrency": concurrency,
        "server_peak_rss_mb": round(peak, 1),
        "setup_s": {k: round(v, 1) for k, v in setup.items()},
    }
