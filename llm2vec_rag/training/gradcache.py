"""Gradient caching (Gao et al. 2021, "GradCache"; sentence-transformers' CachedMultipleNegativesRankingLoss).

A contrastive loss needs every embedding of the batch at once, so the batch, and
with it the number of in-batch negatives, is normally bounded by the memory of
one forward + backward pass. Gradient caching removes the bound:

1. embed the texts in chunks of ``chunk`` without building a graph;
2. compute the loss on those embeddings (leaf tensors) and backpropagate it to them:
   the gradient of the loss with respect to every embedding;
3. embed each chunk again, now with a graph, and backpropagate its cached gradient
   (``embeddings.backward(grad)``), which accumulates the exact parameter gradients.

Memory is one chunk's activations; the cost is one extra forward pass. The random
state (dropout) is saved before each chunk's first pass and restored for its second,
so both passes see the same dropout masks and the gradients equal those of the
uncached loss (``tests/test_train_pairs.py`` checks this).
"""
from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import TypeVar

import torch

T = TypeVar("T")
Embed = Callable[[Sequence[T]], torch.Tensor]  # items -> (n, d) embeddings, differentiable
Loss = Callable[[list[torch.Tensor]], torch.Tensor]  # one (n_g, d) tensor per group -> scalar


def _chunks(items: Sequence[T], size: int) -> list[Sequence[T]]:
    return [items[s : s + size] for s in range(0, len(items), size)]


def _rng_state(device: torch.device) -> tuple[torch.Tensor, torch.Tensor | None]:
    cuda = torch.cuda.get_rng_state(device) if device.type == "cuda" else None
    return torch.get_rng_state(), cuda


def _set_rng_state(state: tuple[torch.Tensor, torch.Tensor | None], device: torch.device) -> None:
    torch.set_rng_state(state[0])
    if state[1] is not None:
        torch.cuda.set_rng_state(state[1], device)


def plain_loss(embed: Embed, groups: Sequence[Sequence[T]], loss_fn: Loss) -> torch.Tensor:
    """The uncached loss: every group embedded in one pass with a graph (call ``.backward()`` on it)."""
    return loss_fn([embed(g) for g in groups])


def cached_backward(embed: Embed, groups: Sequence[Sequence[T]], loss_fn: Loss, chunk: int,
                    device: torch.device, weight: float = 1.0) -> torch.Tensor:
    """Accumulate ``weight * d loss / d parameters`` into ``.grad`` with gradient caching; returns the
    (detached) loss. ``groups``: the text groups the loss takes (e.g. queries, documents), each
    embedded in chunks of at most ``chunk`` items."""
    if chunk < 1:
        raise ValueError(f"chunk must be >= 1, got {chunk}")
    states: list[list[tuple[torch.Tensor, torch.Tensor | None]]] = []
    cached: list[torch.Tensor] = []
    with torch.no_grad():
        for group in groups:
            parts, group_states = [], []
            for piece in _chunks(group, chunk):
                group_states.append(_rng_state(device))
                parts.append(embed(piece).detach())
            states.append(group_states)
            cached.append(torch.cat(parts).requires_grad_(True) if parts else torch.empty(0))
    loss = loss_fn(cached)
    leaves = [c for c in cached if c.requires_grad]
    grads = torch.autograd.grad(loss * weight, leaves, allow_unused=True)
    by_id = {id(c): g for c, g in zip(leaves, grads)}
    after = _rng_state(device)
    for group, group_states, embedded in zip(groups, states, cached):
        grad = by_id.get(id(embedded))
        if grad is None:
            continue
        start = 0
        for piece, state in zip(_chunks(group, chunk), group_states):
            _set_rng_state(state, device)
            out = embed(piece)
            out.backward(grad[start : start + len(piece)].to(out.dtype))
            start += len(piece)
    _set_rng_state(after, device)
    return loss.detach()


__all__ = ["cached_backward", "plain_loss"]
