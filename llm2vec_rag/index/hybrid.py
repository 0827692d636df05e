"""Hybrid search: fuse the dense (cosine) and lexical (BM25) candidate lists into one ranking.

Both sides bring their top ``candidates`` (100 by default). ``convex`` fusion
min-max normalises each side's scores over its own candidates (the best becomes
1, the worst 0; a chunk the other side did not return counts 0 there) and adds
them as ``alpha * dense + (1 - alpha) * lexical`` — Weaviate's "relative score"
fusion. ``rrf`` is reciprocal rank fusion, ``alpha / (rrf_k + rank_dense) +
(1 - alpha) / (rrf_k + rank_lexical)``, which ignores the scores' scale.
``alpha`` is the dense side's weight: 1 is dense only, 0 lexical only.

The default weight was chosen on the SciFact *train* queries only
(``benchmarks/hybrid_alpha.py``; ``docs/retrieval.md`` shows the sweep).
"""
from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal

from ..errors import LLM2VecError

Mode = Literal["hybrid", "dense", "lexical"]
Fusion = Literal["convex", "rrf"]
MODES: tuple[str, ...] = ("hybrid", "dense", "lexical")
FUSIONS: tuple[str, ...] = ("convex", "rrf")
DEFAULT_MODE: Mode = "hybrid"
# chosen on SciFact train (nDCG@10 0.7150 vs BM25 alone 0.7040, BM25's columns then weighted equally):
# benchmarks/hybrid_alpha.py, benchmarks/results/hybrid_alpha-scifact-train-smollm2-135m.json
DEFAULT_ALPHA = 0.25
DEFAULT_RRF_ALPHA = 0.5  # rrf weighs both sides equally unless told
DEFAULT_FUSION: Fusion = "convex"
DEFAULT_CANDIDATES = 100
RRF_K = 60


@dataclass(frozen=True)
class SearchSettings:
    """How one search ranks: the mode, and for ``hybrid`` the fusion, the dense weight and the depth."""

    mode: Mode = DEFAULT_MODE
    alpha: float = DEFAULT_ALPHA
    fusion: Fusion = DEFAULT_FUSION
    candidates: int = DEFAULT_CANDIDATES
    rrf_k: int = RRF_K

    def __post_init__(self) -> None:
        if self.mode not in MODES:
            raise LLM2VecError(f"unknown search mode {self.mode!r}; choose one of {', '.join(MODES)}")
        if self.fusion not in FUSIONS:
            raise LLM2VecError(f"unknown fusion {self.fusion!r}; choose one of {', '.join(FUSIONS)}")
        if not isinstance(self.alpha, (int, float)) or not 0.0 <= float(self.alpha) <= 1.0:
            raise LLM2VecError(f"alpha must be between 0 and 1 (the dense side's weight), got {self.alpha!r}")
        if int(self.candidates) < 1:
            raise LLM2VecError(f"candidates must be at least 1, got {self.candidates}")

    @classmethod
    def of(cls, mode: str | None = None, alpha: float | None = None, fusion: str | None = None,
           candidates: int | None = None) -> SearchSettings:
        """Settings from optional overrides (None keeps the default)."""
        fusion = fusion or DEFAULT_FUSION
        if alpha is None:
            alpha = DEFAULT_RRF_ALPHA if fusion == "rrf" else DEFAULT_ALPHA
        return cls(mode=mode or DEFAULT_MODE, alpha=alpha, fusion=fusion,  # type: ignore[arg-type]
                   candidates=DEFAULT_CANDIDATES if candidates is None else candidates)

    def depth(self, k: int) -> int:
        """How many candidates each side brings for a top-``k`` answer."""
        return max(int(k), int(self.candidates)) if self.mode == "hybrid" else int(k)


@dataclass(frozen=True)
class Fused:
    """One chunk of a fused ranking: its id, the fused score and each side's own score (None: not a candidate)."""

    id: int
    score: float
    dense: float | None
    lexical: float | None


def _min_max(pairs: Sequence[tuple[int, float]]) -> dict[int, float]:
    if not pairs:
        return {}
    scores = [s for _, s in pairs]
    low, high = min(scores), max(scores)
    span = high - low
    return {i: (s - low) / span if span > 0 else 1.0 for i, s in pairs}


def fuse(dense: Sequence[tuple[int, float]], lexical: Sequence[tuple[int, float]], settings: SearchSettings,
         k: int) -> list[Fused]:
    """The top ``k`` of the fused ranking; each input list is (id, score), best first."""
    dense_raw, lexical_raw = dict(dense), dict(lexical)
    alpha = float(settings.alpha)
    if settings.fusion == "rrf":
        d = {i: 1.0 / (settings.rrf_k + r) for r, (i, _) in enumerate(dense, 1)}
        lx = {i: 1.0 / (settings.rrf_k + r) for r, (i, _) in enumerate(lexical, 1)}
    else:
        d, lx = _min_max(dense), _min_max(lexical)
    ids = list(dict.fromkeys([i for i, _ in dense] + [i for i, _ in lexical]))
    fused = [Fused(i, alpha * d.get(i, 0.0) + (1.0 - alpha) * lx.get(i, 0.0), dense_raw.get(i), lexical_raw.get(i))
             for i in ids]
    fused.sort(key=lambda f: (-f.score, -(f.dense if f.dense is not None else -2.0), f.id))
    return fused[:k]


def single(pairs: Sequence[tuple[int, float]], side: str, k: int) -> list[Fused]:
    """One side's ranking as it is (``dense`` or ``lexical`` mode)."""
    return [Fused(i, s, s if side == "dense" else None, s if side == "lexical" else None) for i, s in pairs[:k]]
