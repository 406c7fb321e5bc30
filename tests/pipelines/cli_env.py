"""Point the `memlake` command line (which reads the environment) at a test's settings."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

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


_REPO = Path(__file__).resolve().parents[2]


def child_environment(settings: Settings, tmp_path: Path, **values: str) -> dict[str, str]:
    """The environment of a `memlake` process of its own, on the test's topics and lake;
    `values` add settings (`MEMLAKE_...`). No other `MEMLAKE_` variable leaks in."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("MEMLAKE_")}
    # A SIGKILLed job cannot remove the temp folder every Beam pipeline makes
    # (`beam-pipeline-temp*`): kept under the test's folder, not /tmp.
    (tmp_path / "tmp").mkdir(exist_ok=True)
    env["TMPDIR"] = str(tmp_path / "tmp")
    env.update(
        {
            "PYTHONPATH": str(_REPO),
            "MEMLAKE_HOME": os.environ["MEMLAKE_HOME"],
            "MEMLAKE_KAFKA_BOOTSTRAP": settings.kafka.bootstrap,
            "MEMLAKE_KAFKA_EVENTS_TOPIC": settings.kafka.events_topic,
            "MEMLAKE_KAFKA_DLQ_TOPIC": settings.kafka.dlq_topic,
            "MEMLAKE_LAKE_ROOT": settings.lake.root,
            **values,
        }
    )
    return env


def start_materialize(env: dict[str, str], log: Path, *args: str) -> subprocess.Popen[bytes]:
    """`memlake materialize [args]` in a process of its own, its output appended to `log`."""
    with log.open("ab") as out:
        return subprocess.Popen(
            [sys.executable, "-m", "memlake", "materialize", *args],
            cwd=_REPO,
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
        )
