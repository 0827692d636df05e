"""Contrastive losses: InfoNCE over cosine similarities (SimCSE, supervised pairs) and CoSENT (graded pairs).

For query ``i`` the candidates are every positive in the batch (its own is the
target, the others are in-batch negatives) followed by every hard negative in
the batch. Logits are cosine similarities times ``scale`` (1 / temperature).
"""
from __future__ import annotations

import torch
import torch.nn.functional as F


def info_nce(
    queries: torch.Tensor,
    positives: torch.Tensor,
    negatives: torch.Tensor | None = None,
    scale: float = 20.0,
) -> torch.Tensor:
    """Mean cross-entropy of picking ``positives[i]`` for ``queries[i]``.

    ``queries`` and ``positives``: (B, d); ``negatives``: (N, d) hard negatives
    shared by the whole batch (N may be 0), or None.
    """
    if queries.shape != positives.shape:
        raise ValueError(f"queries {tuple(queries.shape)} and positives {tuple(positives.shape)} differ in shape")
    q = F.normalize(queries.float(), dim=-1)
    candidates = positives.float()
    if negatives is not None and negatives.numel():
        candidates = torch.cat([candidates, negatives.float()], dim=0)
    c = F.normalize(candidates, dim=-1)
    logits = scale * q @ c.T
    labels = torch.arange(q.shape[0], device=q.device)
    return F.cross_entropy(logits, labels)


def cosent(first: torch.Tensor, second: torch.Tensor, scores: torch.Tensor, scale: float = 20.0) -> torch.Tensor:
    """CoSENT (Su 2022), the score-aware loss for graded pairs: for every two pairs ``i, j`` of the batch
    with ``scores[i] > scores[j]``, a penalty ``exp(scale * (cos_j - cos_i))``;
    loss ``log(1 + sum of the penalties)``. Only the order of the scores matters.
    """
    if first.shape != second.shape or first.shape[0] != scores.shape[0]:
        raise ValueError(f"cosent: shapes {tuple(first.shape)}, {tuple(second.shape)}, {tuple(scores.shape)} differ")
    cos = F.cosine_similarity(first.float(), second.float(), dim=-1) * scale
    diff = cos[None, :] - cos[:, None]  # [i, j] = cos_j - cos_i
    wanted = scores.to(cos.device)[:, None] > scores.to(cos.device)[None, :]
    diff = diff.masked_fill(~wanted, float("-inf"))
    zero = torch.zeros(1, dtype=cos.dtype, device=cos.device)
    return torch.logsumexp(torch.cat([zero, diff.flatten()]), dim=0)
