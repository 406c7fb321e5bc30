"""LoRA adapters on the shared base model: attach for a while, then give the base back untouched.

peft injects its layers into the base model in place. A job that trains or
evaluates an adapter attaches it in a `with` block; leaving the block
removes every LoRA layer again (`unload`), so the same loaded base model can
serve the next job, or the next test, as the plain base model.
"""

from __future__ import annotations

__all__ = ["ADAPTER_FORMAT", "lora_config", "attach_lora", "attach_adapter", "adapter_digest"]

import json
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from memlake.errors import ArtifactError
from memlake.settings import TrainingSettings
from training.base_model import BaseLLM

ADAPTER_FORMAT = "peft-lora"


def lora_config(settings: TrainingSettings, *, num_layers: int) -> Any:
    from peft import LoraConfig, TaskType

    layers = None
    if settings.lora_last_layers and settings.lora_last_layers < num_layers:
        layers = list(range(num_layers - settings.lora_last_layers, num_layers))
    return LoraConfig(
        task_type=TaskType.CAUSAL_LM,
        r=settings.lora_rank,
        lora_alpha=settings.lora_alpha,
        lora_dropout=settings.lora_dropout,
        target_modules=list(settings.lora_target_modules),
        layers_to_transform=layers,
        bias="none",
    )


@contextmanager
def attach_lora(base: BaseLLM, config: Any, *, seed: int) -> Iterator[Any]:
    """A fresh, trainable LoRA adapter on the base model (initialised from `seed`)."""
    import torch
    from peft import get_peft_model

    torch.manual_seed(seed)
    model = get_peft_model(base.model, config)
    try:
        yield model
    finally:
        model.unload()
        base.model.eval()


@contextmanager
def attach_adapter(base: BaseLLM, folder: Path, *, adapter_name: str = "default") -> Iterator[Any]:
    """A saved adapter on the base model, for inference."""
    from peft import PeftModel

    if not (folder / "adapter_config.json").is_file():
        raise ArtifactError(str(folder), "not a peft adapter folder (no adapter_config.json)")
    model = PeftModel.from_pretrained(base.model, str(folder), adapter_name=adapter_name, is_trainable=False)
    model.eval()
    try:
        yield model
    finally:
        model.unload()
        base.model.eval()


def adapter_digest(folder: Path) -> dict[str, Any]:
    """The adapter's own config, as saved (rank, modules, layers)."""
    try:
        data: dict[str, Any] = json.loads((folder / "adapter_config.json").read_text())
    except (OSError, ValueError) as e:
        raise ArtifactError(str(folder), f"unreadable adapter config: {e}") from e
    return data
