"""Point the `memlake` command line (which reads the environment) at a test's settings."""

from __future__ import annotations

import pytest

from memlake.settings import Settings


def use_settings(monkeypatch: pytest.MonkeyPatch, settings: Settings) -> None:
    values = {
        "MEMLAKE_KAFKA_BOOTSTRAP": settings.kafka.bootstrap,
        "MEMLAKE_KAFKA_EVENTS_TOPIC": settings.kafka.events_topic,
        "MEMLAKE_KAFKA_DLQ_TOPIC": settings.kafka.dlq_topic,
        "MEMLAKE_LAKE_ROOT": settings.lake.root,
        "MEMLAKE_SERVING_MILVUS_URI": settings.serving.milvus_uri,
        "MEMLAKE_TRAINING_MLFLOW_TRACKING_URI": settings.training.mlflow_tracking_uri,
        "MEMLAKE_TRAINING_ARTIFACTS_ROOT": settings.training.artifacts_root,
        "MEMLAKE_GOVERNANCE_KEY_STORE": str(settings.governance.key_store),
    }
    for name, value in values.items():
        monkeypatch.setenv(name, value)
