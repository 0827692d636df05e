"""Masked next-token prediction (MNTP): masking and the loss.

As in LLM2Vec: a share of the tokens is selected (20% by default); of those,
80% are replaced by the mask token, 10% by a random token and 10% kept. The
selected token at position ``i`` is predicted from the model's output at
position ``i - 1`` (the LM head is a next-token head), with attention
bidirectional. Special tokens (BOS/EOS/pad/...) are never selected.
"""
from __future__ import annotations

from collections.abc import Iterable

import torch
import torch.nn.functional as F

from ..errors import LLM2VecError

IGNORE = -100
DEFAULT_MASK_TOKEN = "_"


def resolve_mask_token(tokenizer, mask_token: str | None = None) -> tuple[str, int]:
    """The mask token and its id: ``mask_token`` if given, else the tokenizer's own, else ``"_"``.

    The token must map to exactly one id (a vocabulary entry or a one-token text).
    """
    token = mask_token or getattr(tokenizer, "mask_token", None) or DEFAULT_MASK_TOKEN
    vocab = tokenizer.get_vocab()
    if token in vocab:
        return token, int(vocab[token])
    ids = tokenizer(token, add_special_tokens=False)["input_ids"]
    if len(ids) != 1:
        raise LLM2VecError(
            f"mask token {token!r} is {len(ids)} tokens for this tokenizer; choose a single-token --mask-token"
        )
    return token, int(ids[0])


def mask_tokens(
    input_ids: torch.Tensor,
    mask_token_id: int,
    special_ids: Iterable[int],
    vocab_size: int,
    probability: float = 0.2,
    generator: torch.Generator | None = None,
    attention_mask: torch.Tensor | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Return (masked input ids, labels): labels hold the original id at selected positions, -100 elsewhere.

    Position 0 is never selected (no output before it predicts it). Every row
    with at least two maskable tokens gets at least one selected token.
    """
    ids = input_ids.clone()
    eligible = torch.ones_like(ids, dtype=torch.bool)
    for sid in set(int(s) for s in special_ids):
        eligible &= ids != sid
    if attention_mask is not None:
        eligible &= attention_mask.bool()
    eligible[:, 0] = False
    draw = torch.rand(ids.shape, generator=generator)
    selected = (draw < probability) & eligible
    # rows that drew nothing: select their eligible position with the smallest draw
    empty = (~selected.any(dim=1)) & eligible.any(dim=1)
    if empty.any():
        first = torch.where(eligible, draw, torch.full_like(draw, 2.0)).argmin(dim=1)
        rows = empty.nonzero(as_tuple=True)[0]
        selected[rows, first[rows]] = True
    labels = torch.full_like(ids, IGNORE)
    labels[selected] = input_ids[selected]
    how = torch.rand(ids.shape, generator=generator)
    replace_mask = selected & (how < 0.8)
    replace_random = selected & (how >= 0.8) & (how < 0.9)
    ids[replace_mask] = mask_token_id
    random_ids = torch.randint(0, vocab_size, ids.shape, generator=generator)
    ids[replace_random] = random_ids[replace_random]
    return ids, labels


def mntp_loss(hidden: torch.Tensor, labels: torch.Tensor, lm_head: torch.nn.Module) -> torch.Tensor:
    """Cross-entropy of predicting ``labels[:, i]`` from ``hidden[:, i - 1]`` (selected positions only).

    Only the selected positions go through the (large) LM head.
    """
    shifted = labels[:, 1:]
    states = hidden[:, :-1]
    where = shifted != IGNORE
    if not where.any():
        raise LLM2VecError("MNTP batch has no masked token")
    logits = lm_head(states[where])
    return F.cross_entropy(logits.float(), shifted[where])
