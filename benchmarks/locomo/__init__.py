"""The LoCoMo harness (Maharana et al., ACL 2024): data, metrics, baselines, memlake's path, report.

- `dataset`: any LoCoMo-format file → conversations, turns (with dialogue ids and session dates), questions.
- `metrics`: evidence recall@k at turn and session level, per category.
- `scoring` (+ `_porter`): LoCoMo's answer token F1.
- `baselines`: BM25 alone and dense all-MiniLM-L6-v2 alone, on the same turns.
- `memlake_system`: memlake under test through its real path (SDK → Kafka → Beam → Delta → serving).
- `answers`: the answer prompt, the recent-turns baseline with a reused KV cache.
- `judge`: the LLM-as-judge protocol of mem0 / Zep / MemOS against an OpenAI-compatible endpoint.
- `harness`, `report`: the run and its tables and plots. The entry point is `benchmarks.locomo_eval`.

Sub-modules are imported on use: importing this package loads no model and no driver.
"""
