"""Distilling memories into a LoRA adapter on this CPU: wall time, peak memory, recall, forgetting.

For each size (50 and 200 memories in the full profile, 16 in the quick
one, which must fit a few minutes of a shared 2-core machine), a fresh process
loads SmolLM2-135M, builds the training set of synthetic facts the base model
cannot know, trains a LoRA adapter for a few epochs, and runs the evaluation
gate: closed-book recall on held-out phrasings (per-token NLL, answer F1)
for the base model and the adapter, and control-set perplexity for both.
The base model's figures are the baseline, measured in the same process.

Peak memory is the child process's maximum resident set (model, optimizer,
activations), which is why each size runs in a process of its own. Torch
runs one intra-op thread (see training_kv_cache for why).
"""

from __future__ import annotations

import json
import math
import multiprocessing
import queue
import shutil
import time
from pathlib import Path
from typing import Any

from benchmarks._own_peak import own_peak_kib
from benchmarks._training_workload import facts, load_average

# memories per run, epochs, LoRA on the last N layers (0: all), eval tokens, batch, learning rate.
# Measured here: 50 memories, 2 epochs at lr 2e-3 on 8 layers took recall NLL 5.49 -> 0.91 but
# control perplexity +70% (the gate rejected it); the profiles train more gently. Quick: 50
# memories at 1.5 epochs took 428 s at load 3-10 and over 1,200 s at load 13. 20 memories at 2
# epochs and 16 answer tokens took 284 s at load 5 (half training, half evaluation: greedy
# answers to every probe, with and without the adapter; NLL 5.43 -> 3.80, gate passed); at 1.5
# epochs and 12 tokens recall was too weak to show (NLL -> 4.25, F1 fell, gate rejected). So
# quick distils 16 memories at 2 epochs (15 steps, 16 probes) and answers with 12 tokens (the
# probes' answers are 7-17 tokens: F1 credits the longest in part, alike for base and adapter;
# recall NLL scores every answer token): 226 s at load 4-6, NLL 5.28 -> 3.90, gate passed.
_PROFILES: dict[str, dict[str, Any]] = {
    "tiny": {"sizes": (3,), "epochs": 0.5, "last_layers": 2, "eval_tokens": 4, "batch": 4, "lr": 2e-3},
    "quick": {"sizes": (16,), "epochs": 2, "last_layers": 4, "eval_tokens": 12, "batch": 8, "lr": 1e-3},
    "full": {"sizes": (50, 200), "epochs": 2, "last_layers": 8, "eval_tokens": 24, "batch": 8, "lr": 1e-3},
}


def _distil(size: int, plan: dict[str, Any], out_dir: str, results: Any) -> None:
    import torch

    from memlake.settings import ModelSettings, TrainingSettings
    from training.base_model import load_base_model
    from training.dataset import build_training_set
    from training.evaluate import gate, measure
    from training.lora import attach_lora, lora_config

    torch.set_num_threads(1)
    began = time.perf_counter()
    base = load_base_model(ModelSettings(), device="cpu", dtype="float32")
    data = build_training_set(facts(size))
    steps = max(2, math.ceil(plan["epochs"] * len(data.examples) / plan["batch"]))
    settings = TrainingSettings(
        max_steps=steps,
        batch_size=plan["batch"],
        lora_last_layers=plan["last_layers"],
        learning_rate=plan["lr"],
        warmup_steps=min(10, steps // 10),
        max_seq_len=96,
        checkpoint_every=max(steps, 1),
        eval_max_new_tokens=plan["eval_tokens"],
    )
    from training.trainer import train_adapter

    config = lora_config(settings, num_layers=int(base.model.config.num_hidden_layers))
    with attach_lora(base, config, seed=settings.seed) as model:
        # A fresh checkpoint folder: one left by an earlier run would be resumed (same settings:
        # no training measured) or refused as another job's (changed settings).
        work_dir = Path(out_dir) / f"ckpt-{size}"
        shutil.rmtree(work_dir, ignore_errors=True)
        trained = train_adapter(base, model, data, settings, work_dir=work_dir)
        eval_began = time.perf_counter()
        with model.disable_adapter():
            before = measure(model, base, data.probes, settings)
        after = measure(model, base, data.probes, settings)
        eval_s = time.perf_counter() - eval_began
    report = gate(before, after, settings)
    results.put(
        {
            "memories": size,
            "examples": len(data.examples),
            "probes": len(data.probes),
            "steps": steps,
            "wall_s": round(time.perf_counter() - began, 1),
            "train_s": round(trained.seconds, 1),
            "eval_s": round(eval_s, 1),
            "train_tokens_per_s": round(trained.tokens / trained.seconds, 1),
            # The spawned worker's own peak: its ru_maxrss would start at the runner's (see _own_peak).
            "peak_rss_mib": round(own_peak_kib() / 1024, 1),
            "final_loss": round(trained.final_loss, 4),
            "recall_nll_base": round(before.recall_nll, 4),
            "recall_nll_adapter": round(after.recall_nll, 4),
            "recall_nll_ratio": round(after.recall_nll / before.recall_nll, 4),
            "answer_f1_base": round(before.answer_f1, 4),
            "answer_f1_adapter": round(after.answer_f1, 4),
            "exact_match_adapter": round(after.exact_match, 4),
            "control_ppl_base": round(before.control_ppl, 3),
            "control_ppl_adapter": round(after.control_ppl, 3),
            "control_ppl_delta_ratio": round(after.control_ppl / before.control_ppl - 1, 4),
            "gate_passed": report.passed,
        }
    )


def _table(rows: list[dict[str, Any]]) -> str:
    return "\n".join(
        [
            "| memories | steps | wall (s) | train (s) | eval (s) | peak RSS (MiB) "
            "| recall NLL base → adapter | answer F1 base → adapter | control ppl Δ | gate |",
            "|---|---|---|---|---|---|---|---|---|---|",
            *(
                f"| {r['memories']} | {r['steps']} | {r['wall_s']} | {r['train_s']} | {r['eval_s']} "
                f"| {r['peak_rss_mib']} | {r['recall_nll_base']} → {r['recall_nll_adapter']} "
                f"| {r['answer_f1_base']} → {r['answer_f1_adapter']} | {r['control_ppl_delta_ratio']:+.1%} "
                f"| {'passed' if r['gate_passed'] else 'rejected'} |"
                for r in rows
            ),
        ]
    )


def _result_of(child: Any, results: Any) -> dict[str, Any] | None:
    """The child's row, or None once it has died without one (a bare `get()` would wait forever)."""
    while True:
        try:
            row: dict[str, Any] = results.get(timeout=5)
            return row
        except queue.Empty:
            if not child.is_alive():
                try:
                    late: dict[str, Any] = results.get(timeout=1)  # put just before it exited
                    return late
                except queue.Empty:
                    return None


def run(profile: str, out_dir: Path) -> dict[str, Any]:
    plan = _PROFILES[profile]
    context = multiprocessing.get_context("spawn")
    rows: list[dict[str, Any]] = []
    load_before = load_average()
    for size in plan["sizes"]:
        results = context.Queue()
        child = context.Process(target=_distil, args=(size, plan, str(out_dir), results))
        child.start()
        row = _result_of(child, results)
        child.join()
        if row is None or child.exitcode != 0:
            raise RuntimeError(f"distilling {size} memories failed with exit code {child.exitcode}")
        rows.append({**row, "load_average_after": load_average()})
        # Written after every size: a long run stopped before its last size keeps what it measured.
        (out_dir / "distill.md").write_text(_table(rows) + "\n")
        (out_dir / "rows.json").write_text(json.dumps(rows, indent=2) + "\n")
    table = _table(rows)
    last = rows[-1]
    return {
        "summary": (
            f"{last['memories']} memories: {last['wall_s']:.0f} s, peak {last['peak_rss_mib']:.0f} MiB; "
            f"recall NLL {last['recall_nll_base']:.2f} → {last['recall_nll_adapter']:.2f}, "
            f"F1 {last['answer_f1_base']:.2f} → {last['answer_f1_adapter']:.2f}, "
            f"control perplexity {last['control_ppl_delta_ratio']:+.1%}"
        ),
        "markdown": table,
        "rows": rows,
        "recall_nll_ratio": last["recall_nll_ratio"],
        "control_ppl_delta_ratio": last["control_ppl_delta_ratio"],
        "torch_threads": 1,
        "load_average_before": load_before,
        "load_average_after": load_average(),
    }
