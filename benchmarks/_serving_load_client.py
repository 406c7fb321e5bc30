"""The load generator of `serving_load`, run as its own process: `python -m benchmarks._serving_load_client`.

Reads a JSON job on stdin ({base_url, key, path, bodies, seconds, concurrency}),
keeps `concurrency` requests in flight for `seconds` (one thread and one HTTP
connection each), and prints what happened as JSON on stdout.
"""

from __future__ import annotations

import json
import sys
import threading
import time
from typing import Any

import httpx


def _worker(job: dict[str, Any], offset: int, stop: float, out: dict[str, Any], lock: threading.Lock) -> None:
    latencies: list[float] = []
    errors = 0
    statuses: dict[str, int] = {}
    bodies = job["bodies"]
    i = offset
    with httpx.Client(
        base_url=job["base_url"], headers={"Authorization": f"Bearer {job['key']}"}, timeout=60
    ) as client:
        while time.monotonic() < stop:
            body = bodies[i % len(bodies)] if bodies else None
            i += job["concurrency"]
            t0 = time.perf_counter()
            try:
                response = client.get(job["path"]) if body is None else client.post(job["path"], json=body)
                code = str(response.status_code)
                errors += response.status_code != 200
            except httpx.HTTPError as e:
                code = type(e).__name__
                errors += 1
            latencies.append(time.perf_counter() - t0)
            statuses[code] = statuses.get(code, 0) + 1
    with lock:
        out["latencies"].extend(latencies)
        out["errors"] += errors
        for code, count in statuses.items():
            out["statuses"][code] = out["statuses"].get(code, 0) + count


def main() -> int:
    job = json.load(sys.stdin)
    out: dict[str, Any] = {"latencies": [], "errors": 0, "statuses": {}}
    lock = threading.Lock()
    began = time.monotonic()
    stop = began + float(job["seconds"])
    threads = [
        threading.Thread(target=_worker, args=(job, n, stop, out, lock))
        for n in range(int(job["concurrency"]))
    ]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    elapsed = time.monotonic() - began
    latencies = sorted(out["latencies"])

    def q(p: float) -> float:
        return (
            latencies[min(len(latencies) - 1, int(p / 100 * len(latencies)))] * 1000
            if latencies
            else float("nan")
        )

    json.dump(
        {
            "requests": len(latencies),
            "seconds": round(elapsed, 2),
            "rps": round(len(latencies) / elapsed, 1),
            "errors": out["errors"],
            "statuses": out["statuses"],
            "latency_ms": {"p50": round(q(50), 2), "p95": round(q(95), 2), "p99": round(q(99), 2)},
        },
        sys.stdout,
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
