"""LoRA training throughput and model FLOPs utilisation on a GPU, for a ~1B Llama-shaped model.

Random weights (throughput does not depend on them) in bf16, the shape of
TinyLlama-1.1B (22 layers, d=2048, GQA 32/4 heads, SwiGLU 5632, vocab 32000),
SDPA attention, LoRA r=16 on every linear layer, fused AdamW on the LoRA
weights. Tokens per second are timed after warm-up steps, with the device
synchronised.

FLOPs per token are counted two ways, both reported:
- `lora`: what this training actually computes. The base weights are frozen,
  so the backward pass computes input gradients only: 4·N for the matmuls
  (N = parameters in matmuls, the LM head included, the embedding lookup
  not), plus 12·L·T·d for attention scores (forward and backward), plus
  6·N_lora for the adapters;
- `6N`: the usual full-training convention (6·N + 12·L·T·d), for comparison
  with published MFU figures. It overstates the work LoRA does.
MFU is achieved FLOP/s over the card's dense bf16 peak (from its name).
Aim (issue): at least 35% MFU on an H100.

Without CUDA the benchmark reports "no GPU" and measures nothing.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

# batch, sequence length, timed steps, warm-up steps
_PROFILES: dict[str, tuple[int, int, int, int]] = {
    "tiny": (1, 256, 3, 1),
    "quick": (8, 2048, 20, 5),
    "full": (8, 2048, 60, 10),
}
# Dense bf16 peaks (no sparsity), FLOP/s.
_PEAKS = (
    ("H200", 989.4e12),
    ("H100 PCIe", 756.0e12),
    ("H100", 989.4e12),
    ("A100", 312.0e12),
    ("L40S", 362.1e12),
    ("A10", 125.0e12),
)


def _peak(name: str) -> float | None:
    return next((peak for key, peak in _PEAKS if key in name), None)


def _model(batch: int) -> tuple[Any, Any]:
    import torch
    from peft import LoraConfig, get_peft_model
    from transformers import LlamaConfig, LlamaForCausalLM

    config = LlamaConfig(
        vocab_size=32000,
        hidden_size=2048,
        intermediate_size=5632,
        num_hidden_layers=22,
        num_attention_heads=32,
        num_key_value_heads=4,
        max_position_embeddings=4096,
        tie_word_embeddings=False,
        use_cache=False,
    )
    config._attn_implementation = "sdpa"
    torch.manual_seed(0)
    previous = torch.get_default_dtype()
    torch.set_default_dtype(torch.bfloat16)
    try:
        with torch.device("cuda"):
            model = LlamaForCausalLM(config)
    finally:
        torch.set_default_dtype(previous)
    lora = LoraConfig(
        r=16,
        lora_alpha=32,
        lora_dropout=0.0,
        target_modules=["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"],
    )
    return get_peft_model(model, lora), config


def _flops_per_token(model: Any, config: Any, seq: int) -> dict[str, float]:
    matmul = sum(
        p.numel()
        for name, p in model.named_parameters()
        if p.dim() == 2 and "embed_tokens" not in name and "lora_" not in name
    )
    lora = sum(p.numel() for p in model.parameters() if p.requires_grad)
    attention = 12 * config.num_hidden_layers * seq * config.hidden_size
    return {
        "lora": 4 * matmul + attention + 6 * lora,
        "6N": 6 * matmul + attention,
        "matmul_params": float(matmul),
        "lora_params": float(lora),
    }


def run(profile: str, out_dir: Path) -> dict[str, Any]:
    import torch

    if not torch.cuda.is_available():
        return {"summary": "no GPU: nothing measured", "gpu": None, "measured": False}
    batch, seq, steps, warmup = _PROFILES[profile]
    name = torch.cuda.get_device_name(0)
    model, config = _model(batch)
    model.train()
    params = [p for p in model.parameters() if p.requires_grad]
    optimizer = torch.optim.AdamW(params, lr=1e-4, fused=True)
    generator = torch.Generator(device="cuda").manual_seed(0)
    ids = torch.randint(0, config.vocab_size, (batch, seq), device="cuda", generator=generator)
    torch.cuda.reset_peak_memory_stats()

    def step() -> float:
        with torch.autocast("cuda", dtype=torch.bfloat16):
            loss = model(input_ids=ids, labels=ids).loss
        loss.backward()
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        return float(loss.detach())

    for _ in range(warmup):
        step()
    torch.cuda.synchronize()
    began = time.perf_counter()
    for _ in range(steps):
        step()
    torch.cuda.synchronize()
    seconds = time.perf_counter() - began
    tokens_per_s = batch * seq * steps / seconds
    flops = _flops_per_token(model, config, seq)
    peak = _peak(name)
    mfu = {k: (tokens_per_s * flops[k] / peak if peak else None) for k in ("lora", "6N")}
    shown = {k: "n/a" if v is None else f"{v:.1%}" for k, v in mfu.items()}
    memory_gib = torch.cuda.max_memory_allocated() / 2**30
    table = "\n".join(
        [
            "| GPU | batch x seq | tokens/s | MFU (LoRA FLOPs) | MFU (6N convention) | peak memory (GiB) |",
            "|---|---|---|---|---|---|",
            f"| {name} | {batch} x {seq} | {tokens_per_s:,.0f} | {shown['lora']} | {shown['6N']} "
            f"| {memory_gib:.1f} |",
        ]
    )
    (out_dir / "gpu_lora.md").write_text(table + "\n")
    return {
        "summary": f"{name}: {tokens_per_s:,.0f} tokens/s LoRA training of a 1.1B Llama in bf16, "
        + (f"MFU {mfu['lora']:.1%} (LoRA FLOPs), {mfu['6N']:.1%} (6N)" if peak else "peak FLOP/s unknown"),
        "markdown": table,
        "measured": True,
        "gpu": name,
        "batch": batch,
        "seq_len": seq,
        "steps": steps,
        "tokens_per_s": round(tokens_per_s, 1),
        "mfu_lora_flops": mfu["lora"],
        "mfu_6n_convention": mfu["6N"],
        "peak_flops": peak,
        "flops_per_token": flops,
        "peak_memory_gib": round(memory_gib, 2),
        "torch": torch.__version__,
    }
