"""Training a LoRA adapter on a cube's memories, resumable and reproducible.

Two modes:
- `plaintext` (plaintext ► parametric): cross-entropy on the answers of the
  training set (memory texts, question/answer pairs, recitations);
- `context` (activation ► parametric): context distillation. The teacher is
  the base model reading the memories from a KV-cache prefix; the student is
  base + LoRA with no memories in its prompt; the loss is the KL divergence
  between their next-token distributions on the answer tokens.

accelerate places the model, runs mixed precision and, under `accelerate
launch`, splits every batch across processes (DDP). Reproducibility: the
batch of step `s` is a pure function of (seed, s), and the RNG is reseeded
from (seed, s) at every step, so a run resumed from the checkpoint of step
`k` takes exactly the steps an uninterrupted run would have taken.
Checkpoints hold the LoRA weights, optimizer and scheduler only (megabytes,
not the base model).
"""

from __future__ import annotations

__all__ = [
    "SHAPING_SETTINGS",
    "TrainResult",
    "EncodedExample",
    "encode_set",
    "train_adapter",
    "latest_checkpoint",
]

import hashlib
import json
import math
import os
import random
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from memlake.errors import TrainingError
from memlake.settings import TrainingSettings
from training._batching import answer_targets, left_pad, positions
from training.base_model import BaseLLM
from training.dataset import TrainingSet
from training.kv_cache import PrefixCache
from training.prompts import encode_example, encode_prompt

if TYPE_CHECKING:
    import torch

_CHECKPOINT = "checkpoint-{step:06d}.pt"
# The settings that change what training computes: part of every job's identity.
SHAPING_SETTINGS = (
    "mode",
    "lora_rank",
    "lora_alpha",
    "lora_dropout",
    "lora_target_modules",
    "lora_last_layers",
    "learning_rate",
    "weight_decay",
    "warmup_steps",
    "max_steps",
    "batch_size",
    "max_seq_len",
    "kl_temperature",
    "mixed_precision",
    "seed",
)
_KEEP_CHECKPOINTS = 2


@dataclass(frozen=True, slots=True)
class EncodedExample:
    prompt_ids: tuple[int, ...]
    answer_ids: tuple[int, ...]
    # Context mode: the suffix after the memory prefix the teacher reads (question + answer).
    teacher_ids: tuple[int, ...] = ()


@dataclass(frozen=True)
class TrainResult:
    steps: int
    resumed_from: int | None
    losses: tuple[float, ...]  # one per step, the whole run (restored ones included)
    seconds: float  # this process's training time (not the restored part)
    tokens: int  # tokens processed by this process
    examples: int

    @property
    def final_loss(self) -> float:
        return self.losses[-1] if self.losses else math.nan


def encode_set(
    base: BaseLLM, data: TrainingSet, settings: TrainingSettings, *, teacher_cache: PrefixCache | None
) -> list[EncodedExample]:
    """Token ids of every example; context mode keeps only examples that have a question."""
    out = []
    for example in data.examples:
        if settings.mode == "context" and example.prompt is None:
            continue
        prompt, answer = encode_example(
            base.tokenizer, prompt=example.prompt, answer=example.answer, max_len=settings.max_seq_len
        )
        teacher: tuple[int, ...] = ()
        if settings.mode == "context":
            assert teacher_cache is not None
            assert example.prompt is not None
            suffix = encode_prompt(base.tokenizer, question=example.prompt).suffix_ids
            teacher = (*suffix, *answer)
        out.append(EncodedExample(tuple(prompt), tuple(answer), teacher))
    if not out:
        raise TrainingError("<unknown>", "the training set has no usable example")
    return out


def _batch_indices(n: int, batch: int, step: int, seed: int) -> list[int]:
    """Examples of global step `step`: consecutive slices of per-epoch permutations."""
    orders: dict[int, list[int]] = {}
    out = []
    for i in range(step * batch, (step + 1) * batch):
        epoch, pos = divmod(i, n)
        if epoch not in orders:
            orders[epoch] = list(range(n))
            random.Random(seed * 1_000_003 + epoch).shuffle(orders[epoch])
        out.append(orders[epoch][pos])
    return out


def _config_digest(settings: TrainingSettings, data_digest: str, fingerprint: str) -> str:
    fields = settings.model_dump(mode="json", include=set(SHAPING_SETTINGS))
    body = json.dumps({"settings": fields, "data": data_digest, "base": fingerprint}, sort_keys=True)
    return hashlib.sha256(body.encode()).hexdigest()


def latest_checkpoint(work_dir: Path) -> Path | None:
    found = sorted(work_dir.glob("checkpoint-*.pt"))
    return found[-1] if found else None


def _save_checkpoint(work_dir: Path, step: int, state: dict[str, Any]) -> None:
    import torch

    work_dir.mkdir(parents=True, exist_ok=True)
    target = work_dir / _CHECKPOINT.format(step=step)
    staging = target.with_suffix(".tmp")
    torch.save(state, staging)
    os.replace(staging, target)  # a kill mid-write leaves the previous checkpoint intact
    for old in sorted(work_dir.glob("checkpoint-*.pt"))[:-_KEEP_CHECKPOINTS]:
        old.unlink()


def train_adapter(
    base: BaseLLM,
    model: Any,
    data: TrainingSet,
    settings: TrainingSettings,
    *,
    work_dir: Path,
    teacher_cache: PrefixCache | None = None,
    accelerator: Any = None,
    on_checkpoint: Callable[[int, Sequence[float]], None] | None = None,
) -> TrainResult:
    """Train the LoRA adapter `model` (a peft model on `base`) for `settings.max_steps` steps.

    Resumes from the newest checkpoint in `work_dir` when it was written for
    the same data, settings and base model. `on_checkpoint(step, losses)`
    runs on the main process after each checkpoint with the losses since the
    previous one.
    """
    import torch
    from accelerate import Accelerator
    from peft import get_peft_model_state_dict, set_peft_model_state_dict

    if settings.mode == "context" and teacher_cache is None:
        raise TrainingError("<unknown>", "context distillation needs the memories' KV cache as teacher")
    accelerator = accelerator or Accelerator(
        mixed_precision=settings.mixed_precision, cpu=base.device.type == "cpu"
    )
    encoded = encode_set(base, data, settings, teacher_cache=teacher_cache)
    digest = _config_digest(settings, data.digest, base.fingerprint_id)
    pad_id = int(base.tokenizer.pad_token_id)

    params = [p for p in model.parameters() if p.requires_grad]
    optimizer = torch.optim.AdamW(params, lr=settings.learning_rate, weight_decay=settings.weight_decay)
    warmup, total = settings.warmup_steps, settings.max_steps

    def schedule(step: int) -> float:
        if step < warmup:
            return (step + 1) / (warmup + 1)
        return max(0.0, (total - step) / max(1, total - warmup))

    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, schedule)
    model, optimizer, scheduler = accelerator.prepare(model, optimizer, scheduler)
    unwrapped = accelerator.unwrap_model(model)

    start, losses, resumed_from = 0, [], None
    checkpoint = latest_checkpoint(work_dir)
    if checkpoint is not None:
        state = torch.load(checkpoint, map_location="cpu", weights_only=True)
        if state["digest"] != digest:
            raise TrainingError(
                "<unknown>",
                f"checkpoint {checkpoint} belongs to another job (data, settings or model differ)",
            )
        set_peft_model_state_dict(unwrapped, state["lora"])
        optimizer.load_state_dict(state["optimizer"])
        scheduler.load_state_dict(state["scheduler"])
        start, losses, resumed_from = int(state["step"]), list(state["losses"]), int(state["step"])

    rank, world = accelerator.process_index, accelerator.num_processes
    model.train()
    started, tokens, reported = time.perf_counter(), 0, len(losses)
    for step in range(start, total):
        torch.manual_seed(settings.seed * 7919 + step)
        indices = _batch_indices(len(encoded), settings.batch_size, step, settings.seed)[rank::world]
        if not indices:
            raise TrainingError(
                "<unknown>", f"batch_size {settings.batch_size} is smaller than {world} processes"
            )
        batch = [encoded[i] for i in indices]
        with accelerator.autocast():
            loss = _loss(
                model,
                unwrapped=unwrapped,
                batch=batch,
                pad_id=pad_id,
                settings=settings,
                teacher_cache=teacher_cache,
                base=base,
                device=accelerator.device,
            )
        accelerator.backward(loss)
        optimizer.step()
        scheduler.step()
        optimizer.zero_grad()
        tokens += sum(len(b.prompt_ids) + len(b.answer_ids) for b in batch)
        losses.append(float(accelerator.reduce(loss.detach(), reduction="mean").item()))
        done = step + 1
        if done % settings.checkpoint_every == 0 or done == total:
            accelerator.wait_for_everyone()
            if accelerator.is_main_process:
                lora = {k: v.detach().cpu() for k, v in get_peft_model_state_dict(unwrapped).items()}
                _save_checkpoint(
                    work_dir,
                    done,
                    {
                        "digest": digest,
                        "step": done,
                        "losses": losses,
                        "lora": lora,
                        "optimizer": optimizer.state_dict(),
                        "scheduler": scheduler.state_dict(),
                    },
                )
                if on_checkpoint is not None:
                    on_checkpoint(done, losses[reported:])
                reported = len(losses)
    model.eval()
    return TrainResult(
        steps=total,
        resumed_from=resumed_from,
        losses=tuple(losses),
        seconds=time.perf_counter() - started,
        tokens=tokens,
        examples=len(encoded),
    )


def _loss(
    model: Any,
    *,
    unwrapped: Any,
    batch: Sequence[EncodedExample],
    pad_id: int,
    settings: TrainingSettings,
    teacher_cache: PrefixCache | None,
    base: BaseLLM,
    device: torch.device,
) -> torch.Tensor:
    """Loss on the answer tokens only. Sequences are left-padded so that every answer ends at
    the last position and the vocabulary projection runs on the last `keep` positions alone."""
    import torch
    from torch.nn import functional as nnf

    ids, mask = left_pad([(*b.prompt_ids, *b.answer_ids) for b in batch], pad_id)
    keep = min(ids.shape[1], max(len(b.answer_ids) for b in batch) + 1)
    labels = answer_targets([b.answer_ids for b in batch], keep).to(device)
    ids, mask = ids.to(device), mask.to(device)
    logits = model(
        input_ids=ids, attention_mask=mask, position_ids=positions(mask), logits_to_keep=keep
    ).logits
    student = logits[:, :-1].float()
    if settings.mode == "plaintext":
        return nnf.cross_entropy(
            student.reshape(-1, student.shape[-1]), labels.reshape(-1), ignore_index=-100
        )
    assert teacher_cache is not None
    t_ids, t_mask = left_pad([b.teacher_ids for b in batch], pad_id)
    t_ids, t_mask = t_ids.to(device), t_mask.to(device)
    prefix = len(teacher_cache.prefix_ids)
    full_mask = torch.cat(
        [torch.ones((len(batch), prefix), dtype=t_mask.dtype, device=device), t_mask], dim=1
    )
    t_positions = positions(t_mask, prefix)
    with torch.no_grad(), unwrapped.disable_adapter():
        teacher_logits = (
            unwrapped(
                input_ids=t_ids,
                attention_mask=full_mask,
                position_ids=t_positions,
                past_key_values=teacher_cache.new_cache(base.model.config, batch=len(batch)),
                logits_to_keep=keep,
                use_cache=True,
            )
            .logits[:, :-1]
            .float()
        )
    temperature = settings.kl_temperature
    valid = labels != -100
    student_logp = nnf.log_softmax(student / temperature, dim=-1)[valid]
    teacher_logp = nnf.log_softmax(teacher_logits / temperature, dim=-1)[valid]
    kl = nnf.kl_div(student_logp, teacher_logp, log_target=True, reduction="batchmean")
    return kl * temperature**2
