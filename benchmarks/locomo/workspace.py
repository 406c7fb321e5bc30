"""An isolated memlake for one benchmark run: its own topics, lake, index and keys.

A benchmark must never touch a developer's cubes or tables, so every run gets
fresh topics (deleted afterwards) and a fresh state folder under its results
folder. The broker is the one the settings name; when that is the local
broker and it is not running, it is started for the run and stopped after.
"""

from __future__ import annotations

__all__ = ["isolated_settings", "apply_overrides", "load_overrides"]

import contextlib
import json
import shutil
import uuid
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

from infra.broker import LocalBroker
from memlake.errors import ConfigError, InfrastructureError
from memlake.settings import KafkaSettings, Settings
from streams.admin import ensure_topics


def load_overrides(path: Path) -> dict[str, Any]:
    """A settings profile: a JSON object of section -> field -> value, e.g. {"serving": {"rrf_k": 20}}."""
    try:
        data = json.loads(path.read_text())
    except (OSError, json.JSONDecodeError) as e:
        raise ConfigError("locomo settings profile", f"{path}: {e}") from e
    if not isinstance(data, dict) or not all(isinstance(v, dict) for v in data.values()):
        raise ConfigError("locomo settings profile", f"{path}: expected an object of sections")
    return data


def apply_overrides(settings: Settings, overrides: Mapping[str, Mapping[str, Any]]) -> Settings:
    """The same settings with some fields replaced, validated like any settings."""
    data = settings.model_dump()
    for section, fields in overrides.items():
        if section not in data:
            raise ConfigError(f"{section}", "no such settings section")
        data[section].update(fields)
    return Settings.model_validate(data)


def _delete_topics(kafka: KafkaSettings, topics: list[str]) -> None:
    from kafka import KafkaAdminClient
    from kafka.errors import KafkaError

    # Leftover topics only cost disk on a local broker: a failed clean-up is not the run's failure.
    with contextlib.suppress(KafkaError, OSError):
        admin = KafkaAdminClient(**kafka.client_options())
        try:
            admin.delete_topics(topics)
        finally:
            admin.close()


@contextlib.contextmanager
def isolated_settings(base: Settings, root: Path) -> Iterator[Settings]:
    """Settings for one run under `root` (emptied first), with fresh topics on a running broker."""
    broker = LocalBroker(base.broker)
    started = False
    if base.kafka.bootstrap == broker.bootstrap and not broker.healthy(timeout_s=3.0):
        broker.up()
        started = True
    if root.exists():
        shutil.rmtree(root)
    root.mkdir(parents=True)
    suffix = uuid.uuid4().hex[:10]
    kafka = base.kafka.model_copy(
        update={"events_topic": f"bench.locomo.{suffix}.events", "dlq_topic": f"bench.locomo.{suffix}.dlq"}
    )
    try:
        try:
            ensure_topics(kafka)
        except InfrastructureError as e:
            raise InfrastructureError(f"the benchmark needs a Kafka broker at {kafka.bootstrap}: {e}") from e
        settings = apply_overrides(
            base.model_copy(update={"kafka": kafka}),
            {
                "lake": {"root": str(root / "lake")},
                "serving": {
                    "milvus_uri": str(root / "milvus.db"),
                    "api_keys_file": root / "api_keys.json",
                    "embedded_pipeline": False,
                },
                "governance": {"key_store": root / "keys"},
                "training": {
                    "mlflow_tracking_uri": f"sqlite:///{root / 'mlflow.db'}",
                    "artifacts_root": str(root / "artifacts"),
                },
            },
        )
        yield settings
    finally:
        _delete_topics(kafka, [kafka.events_topic, kafka.dlq_topic])
        if started:
            broker.down()
