"""What the lake benchmarks share: a broker, fresh topics and lakes, timing helpers."""

from __future__ import annotations

__all__ = ["bench_settings", "produce_workload", "percentile", "subprocess_env"]

import math
import os
import uuid
from pathlib import Path

from benchmarks._lake_workload import Workload
from memlake.settings import KafkaSettings, Settings
from streams.admin import ensure_topics
from streams.producer import EventProducer

_REPO = Path(__file__).resolve().parents[1]


def _bootstrap() -> str:
    """`MEMLAKE_KAFKA_BOOTSTRAP` if set; else the local broker, started when it is not running."""
    configured = os.environ.get("MEMLAKE_KAFKA_BOOTSTRAP")
    if configured:
        return configured
    from infra.broker import LocalBroker
    from memlake.settings import BrokerSettings

    broker = LocalBroker(BrokerSettings())
    broker.up()
    return broker.bootstrap


def bench_settings(out_dir: Path, *, batch_max_events: int = 50_000, partitions: int = 6) -> Settings:
    """Settings with a fresh topic pair and a fresh lake under `out_dir`."""
    suffix = uuid.uuid4().hex[:10]
    kafka = KafkaSettings(
        bootstrap=_bootstrap(),
        events_topic=f"bench.events.{suffix}",
        dlq_topic=f"bench.dlq.{suffix}",
        partitions=partitions,
    )
    ensure_topics(kafka)
    return Settings(
        kafka=kafka,
        lake={"root": str(out_dir / f"lake-{suffix}")},
        pipelines={"batch_max_events": batch_max_events},
    )


def produce_workload(settings: Settings, n: int, *, cubes: int, seed: int = 7) -> None:
    """Stream `n` workload events to the topic without holding them all in memory."""
    with EventProducer(settings.kafka) as producer:
        producer.send_many(Workload(cubes=cubes, seed=seed).events(n), chunk=5000)


def percentile(values: list[float], q: float) -> float:
    if not values:
        return math.nan
    ordered = sorted(values)
    index = min(len(ordered) - 1, max(0, math.ceil(q / 100 * len(ordered)) - 1))
    return ordered[index]


def subprocess_env(settings: Settings) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("MEMLAKE_")}
    env.update(
        {
            "PYTHONPATH": str(_REPO),
            "MEMLAKE_KAFKA_BOOTSTRAP": settings.kafka.bootstrap,
            "MEMLAKE_KAFKA_EVENTS_TOPIC": settings.kafka.events_topic,
            "MEMLAKE_KAFKA_DLQ_TOPIC": settings.kafka.dlq_topic,
            "MEMLAKE_LAKE_ROOT": settings.lake.root,
            "MEMLAKE_PIPELINES_BATCH_MAX_EVENTS": str(settings.pipelines.batch_max_events),
            "MEMLAKE_PIPELINES_FOLLOW_INTERVAL_S": str(settings.pipelines.follow_interval_s),
        }
    )
    if "MEMLAKE_HOME" in os.environ:
        env["MEMLAKE_HOME"] = os.environ["MEMLAKE_HOME"]
    return env
