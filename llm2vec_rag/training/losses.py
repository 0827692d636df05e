"""One contrastive loss for SimCSE and supervised training: InfoNCE over cosine similarities.

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
