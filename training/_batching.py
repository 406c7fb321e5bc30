"""Left-padded batches whose answers all end at the last position.

Left padding lines every sequence's answer up against the end, so the
vocabulary projection (a fifth of SmolLM2's weights) runs only on the last
`keep` positions instead of the whole sequence.
"""

from __future__ import annotations

__all__ = ["left_pad", "answer_targets", "positions"]

from collections.abc import Sequence
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import torch


def left_pad(rows: Sequence[Sequence[int]], pad_id: int) -> tuple[torch.Tensor, torch.Tensor]:
    import torch

    width = max(len(r) for r in rows)
    ids = torch.full((len(rows), width), pad_id, dtype=torch.long)
    mask = torch.zeros((len(rows), width), dtype=torch.long)
    for i, row in enumerate(rows):
        if row:
            ids[i, width - len(row) :] = torch.tensor(list(row), dtype=torch.long)
            mask[i, width - len(row) :] = 1
    return ids, mask


def answer_targets(answers: Sequence[Sequence[int]], keep: int) -> torch.Tensor:
    """Labels of the last `keep - 1` positions: the answer tokens, -100 elsewhere."""
    import torch

    labels = torch.full((len(answers), keep - 1), -100, dtype=torch.long)
    for i, answer in enumerate(answers):
        tail = list(answer)[-(keep - 1) :]
        if tail:
            labels[i, keep - 1 - len(tail) :] = torch.tensor(tail, dtype=torch.long)
    return labels


def positions(mask: torch.Tensor, offset: int = 0) -> torch.Tensor:
    """Position ids that skip the left padding (RoPE then sees each sequence from 0)."""
    return offset + (mask.cumsum(-1) - 1).clamp(min=0)
