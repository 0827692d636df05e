"""Pool token states into one vector, over the text's tokens only.

``pool_mask`` marks the tokens that belong to the text (not the instruction,
not padding); sequences are left-padded, so the last position is always the
last real token.
"""
from __future__ import annotations

from typing import Literal, get_args

import torch

PoolingMode = Literal["mean", "weighted_mean", "eos_token", "last_token", "bos_token"]
POOLING_MODES: tuple[str, ...] = get_args(PoolingMode)


def check_pooling_mode(mode: str) -> PoolingMode:
    if mode not in POOLING_MODES:
        from .errors import LLM2VecError

        raise LLM2VecError(f"unknown pooling_mode {mode!r}; choose one of: {', '.join(POOLING_MODES)}")
    return mode  # type: ignore[return-value]


def pool(hidden: torch.Tensor, pool_mask: torch.Tensor, attention_mask: torch.Tensor, mode: PoolingMode) -> torch.Tensor:
    """``hidden``: (batch, seq, dim); masks: (batch, seq) of 0/1. Returns (batch, dim) in float32.

    ``mean`` averages the text tokens; ``weighted_mean`` weighs the i-th text
    token by i (later tokens have seen more, in a causal model); ``eos_token``
    and ``last_token`` take the final position; ``bos_token`` the first real one.
    An empty text (no text tokens) pools to zeros under the mean modes.
    """
    hidden = hidden.float()
    if mode == "mean":
        weights = pool_mask.float()
    elif mode == "weighted_mean":
        weights = pool_mask.float().cumsum(dim=1) * pool_mask.float()
    elif mode in ("eos_token", "last_token"):
        return hidden[:, -1]
    elif mode == "bos_token":
        first = attention_mask.float().argmax(dim=1)  # left padding: first 1 is the first real token
        return hidden[torch.arange(hidden.shape[0], device=hidden.device), first]
    else:  # pragma: no cover - check_pooling_mode guards the public paths
        check_pooling_mode(mode)
    total = weights.sum(dim=1, keepdim=True).clamp(min=1e-9)
    return (hidden * weights.unsqueeze(-1)).sum(dim=1) / total
