from __future__ import annotations

from pathlib import Path

import pytest

from memlake.errors import TrainingError
from memlake.settings import TrainingSettings
from training.base_model import BaseLLM
from training.dataset import build_training_set
from training.evaluate import answer_nll
from training.kv_cache import build_prefix_cache
from training.lora import attach_lora, lora_config
from training.selection import HotMemory
from training.trainer import _batch_indices, encode_set, latest_checkpoint, train_adapter

from .conftest import TINY_TRAINING

MEMORIES = [
    HotMemory("m1", 1, "Ada's locker code at the Berlin office is 4417.", ("ada",)),
    HotMemory("m2", 1, "The quarterly team offsite takes place in Lisbon on 14 May.", ("offsite",)),
]


def test_every_epoch_visits_every_example_once_in_a_seeded_order() -> None:
    n, batch = 7, 3
    stream = [i for step in range(7) for i in _batch_indices(n, batch, step, seed=11)]
    epochs = [stream[k : k + n] for k in range(0, 21, n)]
    assert all(sorted(epoch) == list(range(n)) for epoch in epochs)
    assert epochs[0] != epochs[1]
    assert _batch_indices(n, batch, 4, seed=11) == _batch_indices(n, batch, 4, seed=11)
    assert stream != [i for step in range(7) for i in _batch_indices(n, batch, step, seed=12)]


@pytest.mark.integration
def test_context_distillation_moves_the_student_towards_the_teacher(
    base_llm: BaseLLM, tmp_path: Path
) -> None:
    settings = TrainingSettings(**{**TINY_TRAINING, "mode": "context", "max_steps": 3})
    data = build_training_set(MEMORIES)
    teacher = build_prefix_cache(base_llm, cube_id="c", memories=MEMORIES)
    encoded = encode_set(base_llm, data, settings, teacher_cache=teacher)
    # Context distillation needs a question to ask the teacher: plain texts are left out.
    assert len(encoded) == len([e for e in data.examples if e.prompt is not None])
    assert all(e.teacher_ids[-len(e.answer_ids) :] == e.answer_ids for e in encoded)
    before = answer_nll(base_llm.model, base_llm, data.probes)
    config = lora_config(settings, num_layers=int(base_llm.model.config.num_hidden_layers))
    with attach_lora(base_llm, config, seed=settings.seed) as model:
        result = train_adapter(base_llm, model, data, settings, work_dir=tmp_path, teacher_cache=teacher)
        after = answer_nll(model, base_llm, data.probes)
    assert result.steps == 3
    assert all(loss > 0 for loss in result.losses)
    assert after < before
    assert latest_checkpoint(tmp_path) == tmp_path / "checkpoint-000003.pt"
    # Leaving the block gave the base model back untouched.
    assert answer_nll(base_llm.model, base_llm, data.probes) == before


@pytest.mark.integration
def test_resuming_from_a_checkpoint_takes_exactly_the_remaining_steps(
    base_llm: BaseLLM, tmp_path: Path
) -> None:
    settings = TrainingSettings(
        max_steps=2, batch_size=2, lora_last_layers=1, checkpoint_every=1, max_seq_len=48
    )
    data = build_training_set(MEMORIES[:1])
    config = lora_config(settings, num_layers=int(base_llm.model.config.num_hidden_layers))
    with attach_lora(base_llm, config, seed=settings.seed) as model:
        whole = train_adapter(base_llm, model, data, settings, work_dir=tmp_path)
    (tmp_path / "checkpoint-000002.pt").unlink()  # as if killed after step 1
    with attach_lora(base_llm, config, seed=settings.seed) as model:
        resumed = train_adapter(base_llm, model, data, settings, work_dir=tmp_path)
    assert whole.resumed_from is None
    assert resumed.resumed_from == 1
    assert resumed.losses == whole.losses
    other = settings.model_copy(update={"learning_rate": 0.5})
    (tmp_path / "checkpoint-000002.pt").unlink()
    with (
        attach_lora(base_llm, config, seed=settings.seed) as model,
        pytest.raises(TrainingError, match="another job"),
    ):
        train_adapter(base_llm, model, data, other, work_dir=tmp_path)
