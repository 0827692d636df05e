"""Evaluation of encoders on standard benchmarks (retrieval: BEIR layout)."""
from __future__ import annotations

from .retrieval import (
    BeirData,
    DATASET_INSTRUCTIONS,
    evaluate_rankings,
    load_beir,
    mrr_at_k,
    ndcg_at_k,
    recall_at_k,
    run_retrieval_eval,
)

__all__ = [
    "BeirData", "DATASET_INSTRUCTIONS", "evaluate_rankings", "load_beir", "mrr_at_k", "ndcg_at_k",
    "recall_at_k", "run_retrieval_eval",
]
