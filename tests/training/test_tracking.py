"""MLflow's usage telemetry: off unless the settings turn it on."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from memlake.settings import TrainingSettings
from training.tracking import MlflowTracker

_REPO = Path(__file__).resolve().parents[2]
# MLflow 3.17 keeps its telemetry off by itself where one of these is set (CI, pytest):
# `mlflow.telemetry.utils._is_ci_env_or_testing`.
_CI_MARKERS = frozenset(
    {
        "PYTEST_CURRENT_TEST", "GITHUB_ACTIONS", "CI", "CIRCLECI", "GITLAB_CI", "JENKINS_URL", "TRAVIS",
        "TF_BUILD", "BITBUCKET_BUILD_NUMBER", "CODEBUILD_BUILD_ARN", "BUILDKITE", "TEAMCITY_VERSION",
        "CLOUD_RUN_EXECUTION", "RUNBOT_HOST_URL", "RUNBOT_BUILD_NAME", "RUNBOT_WORKER_ID",
    }
)  # fmt: skip

_PROBE = """
import sys
from memlake.settings import TrainingSettings
from training.tracking import MlflowTracker
settings = TrainingSettings(mlflow_tracking_uri=sys.argv[1], artifacts_root=sys.argv[2],
                            mlflow_telemetry=sys.argv[3] == "on")
MlflowTracker(settings).client()
from mlflow.telemetry import get_telemetry_client
from mlflow.telemetry.utils import is_telemetry_disabled
print(is_telemetry_disabled(), get_telemetry_client() is None)
"""


def _settings(tmp_path: Path, **changes: object) -> TrainingSettings:
    return TrainingSettings(
        mlflow_tracking_uri=f"sqlite:///{tmp_path / 'mlflow.db'}", artifacts_root=str(tmp_path), **changes
    )


def test_the_tracker_turns_mlflow_telemetry_off_unless_asked(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("MLFLOW_DISABLE_TELEMETRY", "false")
    MlflowTracker(_settings(tmp_path, mlflow_telemetry=True)).client()
    assert os.environ["MLFLOW_DISABLE_TELEMETRY"] == "false"
    MlflowTracker(_settings(tmp_path)).client()
    assert os.environ["MLFLOW_DISABLE_TELEMETRY"] == "true"


def test_outside_ci_mlflow_starts_no_telemetry_client(tmp_path: Path) -> None:
    """In a process that does not look like CI to MLflow, as on a user's machine. (Not tried
    with telemetry on: MLflow's client would then fetch its configuration from the internet.)"""
    env = {k: v for k, v in os.environ.items() if k not in _CI_MARKERS and k != "MLFLOW_DISABLE_TELEMETRY"}
    env["PYTHONPATH"] = str(_REPO)
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    done = subprocess.run(
        [sys.executable, "-c", _PROBE, uri, str(tmp_path), "off"],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stdout.split("\n")[-2] == "True True"
