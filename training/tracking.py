"""MLflow: one run per cube per night, a registered model per cube, the `champion` alias.

Everything goes through an `MlflowClient` bound to the configured tracking
store (SQLite by default, a server by URI), never through MLflow's global
fluent state, so several trackers can live in one process. Adapters are
logged as plain artifacts (a peft folder): MLflow's transformers flavour
would record a hub id for the base model, which is meaningless offline.

A run is found again by its tags (cube, night, job key) while it is
unfinished, so a job killed mid-training and started again continues the
same run instead of opening a second one.
"""

from __future__ import annotations

__all__ = ["ChampionRef", "MlflowTracker", "registered_model_name", "TAINTED_TAG"]

import os
import re
import zlib
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from memlake.errors import InfrastructureError
from memlake.settings import TrainingSettings
from training.dataset import TrainingSet

_CUBE_TAG = "memlake.cube_id"
_NIGHT_TAG = "memlake.night"
_JOB_TAG = "memlake.job_key"
TAINTED_TAG = "memlake.tainted"  # on a model version trained on content that was since erased


def registered_model_name(settings: TrainingSettings, cube_id: str) -> str:
    """A registry name per cube; cube ids may hold characters registry names should not."""
    safe = re.sub(r"[^A-Za-z0-9_.-]+", "_", cube_id)
    if safe != cube_id:
        safe = f"{safe}-{zlib.crc32(cube_id.encode()):08x}"
    return f"{settings.registered_model_prefix}{safe}"


@dataclass(frozen=True, slots=True)
class ChampionRef:
    """The registered model version a cube's champion alias points at."""

    cube_id: str
    name: str
    version: str
    source: str
    run_id: str | None
    tags: Mapping[str, str]

    @property
    def uri(self) -> str:
        return f"models:/{self.name}/{self.version}"


class MlflowTracker:
    """Tracking and registry for distillation runs. The constructor does no I/O."""

    def __init__(self, settings: TrainingSettings) -> None:
        self._settings = settings
        self._client: Any = None
        self._experiment_id: str | None = None

    @property
    def settings(self) -> TrainingSettings:
        return self._settings

    def client(self) -> Any:
        if self._client is None:
            if not self._settings.mlflow_telemetry:
                # Before MLflow's first import: importing it starts its telemetry client, which
                # fetches its configuration from the internet. Each event checks it again.
                os.environ["MLFLOW_DISABLE_TELEMETRY"] = "true"
            from mlflow import MlflowClient

            uri = self._settings.mlflow_tracking_uri
            if uri.startswith("sqlite:///"):
                Path(uri.removeprefix("sqlite:///")).parent.mkdir(parents=True, exist_ok=True)
            self._client = MlflowClient(tracking_uri=uri, registry_uri=uri)
        return self._client

    def _call(self, what: str, fn: Any, *args: Any, **kwargs: Any) -> Any:
        from mlflow.exceptions import MlflowException

        try:
            return fn(*args, **kwargs)
        except MlflowException as e:
            raise InfrastructureError(f"MLflow ({self._settings.mlflow_tracking_uri}) {what}: {e}") from e

    def experiment_id(self) -> str:
        if self._experiment_id is None:
            client = self.client()
            name = self._settings.experiment_name
            found = self._call("get experiment", client.get_experiment_by_name, name)
            if found is not None:
                self._experiment_id = str(found.experiment_id)
            else:
                location = self._settings.mlflow_artifact_root or f"{self._settings.artifacts_root}/mlflow"
                if "://" not in location:
                    Path(location).mkdir(parents=True, exist_ok=True)
                self._experiment_id = str(
                    self._call(
                        "create experiment", client.create_experiment, name, artifact_location=location
                    )
                )
        return self._experiment_id

    # -- runs --------------------------------------------------------------------------

    def open_run(
        self, *, cube_id: str, night: str, job_key: str, params: Mapping[str, Any]
    ) -> tuple[str, bool]:
        """(run id, resumed): the unfinished run of this job if there is one, else a new run."""
        client = self.client()
        query = (
            f"tags.`{_CUBE_TAG}` = '{cube_id}' and tags.`{_NIGHT_TAG}` = '{night}' "
            f"and tags.`{_JOB_TAG}` = '{job_key}' and attributes.status != 'FINISHED'"
        )
        runs = self._call(
            "search runs", client.search_runs, [self.experiment_id()], filter_string=query, max_results=1
        )
        if runs:
            run_id = str(runs[0].info.run_id)
            self._call("reopen run", client.update_run, run_id, status="RUNNING")
            return run_id, True
        run = self._call(
            "create run",
            client.create_run,
            self.experiment_id(),
            run_name=f"{cube_id}@{night}",
            tags={_CUBE_TAG: cube_id, _NIGHT_TAG: night, _JOB_TAG: job_key},
        )
        run_id = str(run.info.run_id)
        from mlflow.entities import Param

        self._call(
            "log params",
            client.log_batch,
            run_id,
            params=[Param(k, str(v)[:6000]) for k, v in sorted(params.items())],
        )
        return run_id, False

    def log_metrics(self, run_id: str, metrics: Mapping[str, float], *, step: int | None = None) -> None:
        import time

        from mlflow.entities import Metric

        now = int(time.time() * 1000)
        entries = [Metric(k, float(v), now, step or 0) for k, v in sorted(metrics.items())]
        self._call("log metrics", self.client().log_batch, run_id, metrics=entries)

    def log_series(self, run_id: str, key: str, values: list[tuple[int, float]]) -> None:
        import time

        from mlflow.entities import Metric

        now = int(time.time() * 1000)
        entries = [Metric(key, float(v), now, step) for step, v in values]
        for start in range(0, len(entries), 900):
            self._call("log metrics", self.client().log_batch, run_id, metrics=entries[start : start + 900])

    def set_tags(self, run_id: str, tags: Mapping[str, str]) -> None:
        for key, value in tags.items():
            self._call("set tag", self.client().set_tag, run_id, key, value)

    def log_dataset(
        self, run_id: str, data: TrainingSet, *, name: str, table_uri: str, table_version: int | None
    ) -> None:
        """The training set, with the Delta table and version it was read from."""
        import pandas as pd  # type: ignore[import-untyped]
        from mlflow.data.delta_dataset_source import DeltaDatasetSource
        from mlflow.data.pandas_dataset import from_pandas
        from mlflow.entities import DatasetInput, InputTag

        source = DeltaDatasetSource(path=table_uri, delta_table_version=table_version)
        frame = pd.DataFrame(data.rows(), dtype="string")
        dataset = from_pandas(frame, source=source, name=name, digest=data.digest[:32])
        entry = DatasetInput(dataset._to_mlflow_entity(), tags=[InputTag("mlflow.data.context", "training")])
        self._call("log dataset", self.client().log_inputs, run_id, datasets=[entry])

    def log_adapter(self, run_id: str, folder: Path) -> str:
        """Upload the adapter folder as the run's `adapter` artifacts; returns their URI."""
        client = self.client()
        self._call("log artifacts", client.log_artifacts, run_id, str(folder), artifact_path="adapter")
        run = self._call("get run", client.get_run, run_id)
        return f"{run.info.artifact_uri}/adapter"

    def finish(self, run_id: str, *, failed: bool = False) -> None:
        self._call("end run", self.client().set_terminated, run_id, "FAILED" if failed else "FINISHED")

    # -- registry ----------------------------------------------------------------------

    def register(self, cube_id: str, *, run_id: str, source: str, tags: Mapping[str, str]) -> str:
        """A new version of the cube's registered model; returns the version."""
        from mlflow.exceptions import MlflowException

        client = self.client()
        name = registered_model_name(self._settings, cube_id)
        try:
            client.get_registered_model(name)
        except MlflowException:
            self._call(
                "create registered model", client.create_registered_model, name, tags={_CUBE_TAG: cube_id}
            )
        version = self._call(
            "create model version",
            client.create_model_version,
            name,
            source=source,
            run_id=run_id,
            tags=dict(tags),
        )
        return str(version.version)

    def promote(self, cube_id: str, version: str) -> None:
        """Move the cube's champion alias to `version` (only the evaluation gate calls this)."""
        name = registered_model_name(self._settings, cube_id)
        self._call(
            "set alias",
            self.client().set_registered_model_alias,
            name,
            self._settings.champion_alias,
            version,
        )

    def champion(self, cube_id: str) -> ChampionRef | None:
        from mlflow.exceptions import MlflowException

        name = registered_model_name(self._settings, cube_id)
        try:
            mv = self.client().get_model_version_by_alias(name, self._settings.champion_alias)
        except MlflowException as e:
            if getattr(e, "error_code", "") in {"RESOURCE_DOES_NOT_EXIST", "INVALID_PARAMETER_VALUE"}:
                return None
            raise InfrastructureError(f"MLflow ({self._settings.mlflow_tracking_uri}) get alias: {e}") from e
        return ChampionRef(cube_id, name, str(mv.version), str(mv.source), mv.run_id, dict(mv.tags or {}))

    def withdraw(self, model_uri: str, *, reason: str) -> bool:
        """Mark an adapter version tainted and stop serving it (erasure follows lineage here).

        `model_uri` is `models:/<name>/<version>`. The version is tagged
        `memlake.tainted` with the reason and, if its cube's champion alias points
        at it, the alias is removed: serving falls back to the base model for that
        cube until a retrained adapter is promoted. Returns whether it was champion.
        """
        from mlflow.exceptions import MlflowException

        name, _, version = model_uri.removeprefix("models:/").rpartition("/")
        client = self.client()
        self._call("tag model version", client.set_model_version_tag, name, version, TAINTED_TAG, reason)
        alias = self._settings.champion_alias
        try:
            champion = client.get_model_version_by_alias(name, alias)
        except MlflowException:
            return False  # no champion for that model
        if str(champion.version) != version:
            return False
        self._call("delete alias", client.delete_registered_model_alias, name, alias)
        return True

    def download(self, source: str) -> Path:
        """A local copy of an artifact folder (the folder itself on a local store)."""
        import mlflow.artifacts

        path = self._call(
            "download artifacts",
            mlflow.artifacts.download_artifacts,
            artifact_uri=source,
            tracking_uri=self._settings.mlflow_tracking_uri,
        )
        return Path(path)
