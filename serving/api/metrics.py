"""Prometheus metrics of one service instance (its own registry, so tests can run several apps)."""

from __future__ import annotations

__all__ = ["ServingMetrics"]

import time
from collections.abc import Awaitable, Callable

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from starlette.requests import Request
from starlette.responses import Response

from memlake.errors import InfrastructureError
from serving.components import Components

_LATENCY_BUCKETS = (0.002, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0)


class ServingMetrics:
    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        r = self.registry
        self.requests = Counter(
            "memlake_http_requests_total",
            "HTTP requests answered.",
            ["method", "route", "status"],
            registry=r,
        )
        self.latency = Histogram(
            "memlake_http_request_duration_seconds",
            "Time to answer (streams: to the first byte).",
            ["method", "route"],
            buckets=_LATENCY_BUCKETS,
            registry=r,
        )
        self.search_stage = Histogram(
            "memlake_search_stage_seconds",
            "Time spent per retrieval stage (embed, dense, lexical, fuse).",
            ["stage"],
            buckets=_LATENCY_BUCKETS,
            registry=r,
        )
        self.snapshot_version = Gauge(
            "memlake_snapshot_version", "Events-table version the pinned snapshot reflects.", registry=r
        )
        self.snapshot_memories = Gauge(
            "memlake_snapshot_memories", "Memories in the pinned snapshot.", registry=r
        )
        self.index_lag = Gauge(
            "memlake_index_lag_versions",
            "Materialised events-table versions the snapshot and index have not caught up with.",
            registry=r,
        )
        self.unflushed = Gauge(
            "memlake_index_unflushed_rows", "Vector rows written but not flushed.", registry=r
        )
        self.pending_deletes = Gauge(
            "memlake_index_pending_deletes", "Vector rows waiting for older snapshots to drain.", registry=r
        )
        self.consumer_lag = Gauge(
            "memlake_consumer_lag_events",
            "Events in the log that the snapshot does not reflect yet, summed over partitions.",
            registry=r,
        )
        self.follow_errors = Gauge(
            "memlake_snapshot_follow_errors", "Failed attempts to move the snapshot forward.", registry=r
        )
        self.standing_by = Gauge(
            "memlake_embedded_pipeline_standing_by",
            "1 while the embedded pipeline leaves the lake to another process's writer lease.",
            registry=r,
        )
        self.access_events = Gauge(
            "memlake_access_events", "memory.accessed events by outcome.", ["outcome"], registry=r
        )

    def middleware(
        self,
    ) -> Callable[[Request, Callable[[Request], Awaitable[Response]]], Awaitable[Response]]:
        async def observe(request: Request, call_next: Callable[[Request], Awaitable[Response]]) -> Response:
            started = time.perf_counter()
            response = await call_next(request)
            route = request.scope.get("route")
            path = getattr(route, "path", "unmatched")
            self.latency.labels(request.method, path).observe(time.perf_counter() - started)
            self.requests.labels(request.method, path, str(response.status_code)).inc()
            return response

        return observe

    def refresh(self, components: Components) -> None:
        keeper = components.keeper
        stats = keeper.stats
        if keeper.ready:
            snapshot = keeper.current()
            self.snapshot_version.set(snapshot.version)
            self.snapshot_memories.set(snapshot.memory_count())
            self.index_lag.set(max(0, stats.lake_head - snapshot.version))
            try:
                ends = components.offsets.end_offsets()
            except InfrastructureError:
                ends = {}
            self.consumer_lag.set(
                sum(max(0, end - 1 - snapshot.covered.get(p, -1)) for p, end in ends.items())
            )
        self.unflushed.set(stats.unflushed_rows)
        self.pending_deletes.set(stats.pending_deletes)
        self.follow_errors.set(stats.follow_errors)
        self.standing_by.set(0 if stats.writer_elsewhere is None else 1)
        recorder = components.recorder
        self.access_events.labels("sent").set(recorder.sent)
        self.access_events.labels("dropped").set(recorder.dropped)
        self.access_events.labels("pending").set(recorder.pending)
        self.access_events.labels("send_failures").set(recorder.failures)

    def exposition(self) -> bytes:
        return generate_latest(self.registry)
