from __future__ import annotations

import time
from pathlib import Path

import pytest

from memlake.errors import ModelLoadError
from memlake.settings import ModelSettings
from training.base_model import BaseLLM, load_base_model, resolve_model_dir


@pytest.mark.integration
def test_packaged_smollm2_loads_from_the_converted_copy(base_llm: BaseLLM) -> None:
    assert (base_llm.path / "model.safetensors").is_file()
    assert base_llm.model.config.model_type == "llama"
    assert base_llm.fingerprint.dtype == "float32"
    started = time.perf_counter()
    again = load_base_model(ModelSettings(), device="cpu", dtype="float32")
    # The GGUF is de-quantised once; later loads read safetensors.
    assert time.perf_counter() - started < 10
    assert again.fingerprint == base_llm.fingerprint


@pytest.mark.integration
def test_a_local_folder_loads_with_the_same_fingerprint(base_llm: BaseLLM) -> None:
    by_folder = load_base_model(ModelSettings(base_llm=str(base_llm.path)), device="cpu", dtype="float32")
    assert by_folder.fingerprint == base_llm.fingerprint


@pytest.mark.integration
def test_dtype_is_part_of_the_fingerprint(base_llm: BaseLLM) -> None:
    bf16 = load_base_model(ModelSettings(), device="cpu", dtype="bfloat16")
    assert bf16.fingerprint.weights_sha256 == base_llm.fingerprint.weights_sha256
    assert bf16.fingerprint_id != base_llm.fingerprint_id


@pytest.mark.integration
def test_greedy_answer_is_deterministic(base_llm: BaseLLM) -> None:
    ids = base_llm.tokenizer.apply_chat_template(
        [{"role": "user", "content": "What is the capital of France?"}],
        add_generation_prompt=True,
        return_tensors="pt",
    )["input_ids"]
    out = base_llm.model.generate(ids, max_new_tokens=12, do_sample=False)
    assert "Paris" in base_llm.tokenizer.decode(out[0, ids.shape[1] :])


def test_a_folder_without_config_is_refused(tmp_path: Path) -> None:
    with pytest.raises(ModelLoadError) as caught:
        resolve_model_dir(ModelSettings(base_llm=str(tmp_path)))
    assert caught.value.model == str(tmp_path)
