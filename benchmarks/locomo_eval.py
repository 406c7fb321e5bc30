"""LoCoMo end to end: memlake's retrieval and answers against BM25, dense and recent-turns baselines.

`run(profile, out_dir)` is the `make bench` entry (profiles tiny, quick, full;
see `benchmarks.locomo.harness.PROFILES`). It reads, at this entry point:

- `LOCOMO_DATA`: any LoCoMo-format JSON file (default: the development split,
  `../shared/data/locomo/locomo_dev.json` next to the repository; the data is
  never copied into the repository);
- `LOCOMO_SETTINGS`: the settings profile, a JSON object of memlake settings
  overrides (`{"serving": {"rrf_k": 20}}`) applied on top of the `MEMLAKE_*`
  environment; default `benchmarks/locomo/settings/locomo.json` (the scheduler
  ranks by relevance alone: LoCoMo asks about any point of a months-long
  history, where recency is no evidence). When the profile changes the
  scheduler policy, the policy of the plain settings is measured too, on the
  same ingestion, as its own row;
- the memlake settings themselves (`Settings()`): the broker, the models, and
  `MEMLAKE_MODELS_OPENAI_*` for the LLM-as-judge protocol.

The same as a command: `python -m benchmarks.locomo_eval --profile quick --data FILE --out DIR`.
"""

from __future__ import annotations

__all__ = ["run", "evaluate", "DEFAULT_DATA", "DEFAULT_SETTINGS_PROFILE", "main"]

import argparse
import os
import shutil
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from benchmarks.locomo.answers import LocalAnswerer
from benchmarks.locomo.baselines import Bm25Retriever, DenseRetriever, SharedDocumentVectors, load_minilm
from benchmarks.locomo.dataset import first_sessions, load_locomo
from benchmarks.locomo.harness import PROFILES, run_locomo
from benchmarks.locomo.judge import ChatEndpoint, OpenAIChatEndpoint
from benchmarks.locomo.memlake_system import MemlakeSystem, MemlakeView
from benchmarks.locomo.systems import TurnRetrieverSystem
from benchmarks.locomo.workspace import apply_overrides, isolated_settings, load_overrides
from memlake.errors import DatasetError
from memlake.settings import Settings

_REPO = Path(__file__).resolve().parents[1]
DEFAULT_DATA = _REPO.parent / "shared" / "data" / "locomo" / "locomo_dev.json"
DEFAULT_SETTINGS_PROFILE = Path(__file__).resolve().parent / "locomo" / "settings" / "locomo.json"


def _judge(settings: Settings) -> ChatEndpoint | None:
    m = settings.models
    if not m.openai_base_url or not m.openai_model:
        return None
    return OpenAIChatEndpoint(base_url=m.openai_base_url, model=m.openai_model, api_key=m.openai_api_key)


def _remote_generator(settings: Settings) -> bool:
    """Whether the service would answer through the OpenAI-compatible endpoint (as `build_generator`)."""
    m = settings.models
    return m.generator == "openai" or (m.generator == "auto" and bool(m.openai_base_url))


def evaluate(
    *, profile: str, data: Path, settings: Settings, out_dir: Path, settings_profile: Path | None = None
) -> dict[str, Any]:
    """Run the LoCoMo harness with these settings (the broker they name must be reachable or local)."""
    from serving.embeddings import PACKAGED_MINILM
    from serving.generation import TransformersGenerator
    from serving.service import build_embedder, build_shelves
    from training.base_model import load_base_model

    if profile not in PROFILES:
        raise ValueError(f"unknown profile {profile!r} (one of {', '.join(PROFILES)})")
    if not data.is_file():
        raise DatasetError(str(data), "not found: set LOCOMO_DATA to a LoCoMo-format JSON file")
    chosen = PROFILES[profile]
    conversations = load_locomo(data)[: chosen.conversations]
    if chosen.sessions is not None:
        conversations = [first_sessions(c, chosen.sessions) for c in conversations]
    plain_policy = settings.serving.scheduler_policy
    if settings_profile is not None:
        settings = apply_overrides(settings, load_overrides(settings_profile))
    state = out_dir / "state"
    with isolated_settings(settings, state) as run_settings:
        embedder = SharedDocumentVectors(build_embedder(run_settings))
        # memlake's scheduler counts tokens with the local generator's tokenizer, which loads the
        # whole base model: load it once here and give the same model to the answerer.
        shared_llm = None if _remote_generator(run_settings) else load_base_model(run_settings.models)
        generator = (
            None
            if shared_llm is None
            else TransformersGenerator(
                lambda: shared_llm,
                name=run_settings.models.base_llm,
                shelves=lambda base: build_shelves(run_settings, base),
            )
        )
        memlake = MemlakeSystem(run_settings, embedder=embedder, generator=generator)
        # The dense baseline is all-MiniLM-L6-v2: when memlake embeds with it too, the baseline
        # reuses the vectors of the same texts instead of encoding every turn again.
        shared = run_settings.models.embedder == PACKAGED_MINILM
        variants = []
        if chosen.policy_variant and plain_policy != run_settings.serving.scheduler_policy:
            variants.append(
                MemlakeView(memlake, name=f"memlake ({plain_policy} scheduler)", policy=plain_policy)
            )
        try:
            encoder = embedder if shared else load_minilm(threads=run_settings.models.embed_threads)
            baselines = [
                TurnRetrieverSystem("bm25", Bm25Retriever),
                TurnRetrieverSystem("dense", lambda turns: DenseRetriever(turns, encoder)),
            ]
            answerer = None
            if chosen.answer_conversations != 0:
                llm = shared_llm if shared_llm is not None else load_base_model(run_settings.models)
                answerer = LocalAnswerer(
                    llm.model,
                    llm.tokenizer,
                    eos_token_ids=llm.eos_token_ids,
                    max_new_tokens=chosen.max_new_tokens,
                )
            note = f"; settings profile `{settings_profile.name}`" if settings_profile else ""
            if shared:
                note += "; the dense baseline reuses memlake's document vectors (same model, same texts)"
            result = run_locomo(
                conversations,
                profile=chosen,
                memlake=memlake,
                memlake_context=memlake,
                baselines=baselines,
                variants=variants,
                out_dir=out_dir,
                answer_model=answerer,
                answer_budget_tokens=run_settings.serving.context_token_budget,
                judge=_judge(run_settings),
                settings_note=note + f"; data `{data.name}`",
            )
        finally:
            memlake.close()
    shutil.rmtree(state, ignore_errors=True)
    result["dense_vectors_reused"] = embedder.reused if shared else 0
    result["settings"] = {
        "profile_file": str(settings_profile) if settings_profile else None,
        "serving": run_settings.serving.model_dump(
            include={
                "candidates",
                "rrf_k",
                "dense_weight",
                "lexical_weight",
                "scheduler_policy",
                "context_token_budget",
            }
        ),
        "base_llm": run_settings.models.base_llm,
        "embedder": run_settings.models.embedder,
    }
    return result


def run(profile: str, out_dir: Path) -> dict[str, Any]:
    """The bench runner's entry: settings and data from the environment."""
    data = Path(os.environ.get("LOCOMO_DATA", str(DEFAULT_DATA)))
    overrides = os.environ.get("LOCOMO_SETTINGS")
    return evaluate(
        profile=profile,
        data=data,
        settings=Settings(),
        out_dir=out_dir,
        settings_profile=Path(overrides) if overrides else DEFAULT_SETTINGS_PROFILE,
    )


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m benchmarks.locomo_eval", description=__doc__.split("\n")[0]
    )
    parser.add_argument("--profile", choices=sorted(PROFILES), default="quick")
    parser.add_argument("--data", type=Path, default=DEFAULT_DATA, help="a LoCoMo-format JSON file")
    parser.add_argument(
        "--settings-profile",
        type=Path,
        default=DEFAULT_SETTINGS_PROFILE,
        help="JSON overrides of memlake settings",
    )
    parser.add_argument(
        "--out", type=Path, default=_REPO / "benchmarks" / "results" / "adhoc" / "locomo_eval"
    )
    args = parser.parse_args(argv)
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
    result = evaluate(
        profile=args.profile,
        data=args.data,
        settings=Settings(),
        out_dir=args.out,
        settings_profile=args.settings_profile,
    )
    print(result["markdown"])
    print(f"\nreport, plots and per-question records: {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
