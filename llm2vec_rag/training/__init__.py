"""Fine-tuning decoder LLMs into encoders: MNTP, unsupervised SimCSE and supervised contrastive LoRA.

Each recipe writes a LoRA adapter directory that :meth:`LLM2Vec.from_pretrained`
loads (and stacks) directly, with a card (``README.md`` + ``training_card.json``).
Names are imported on first use, so reading the configs (as the CLI does to
build its options) does not pull in torch.
"""
from __future__ import annotations

import importlib
from typing import Any

_WHERE = {
    "MNTPConfig": "config", "SimCSEConfig": "config", "SupervisedConfig": "config", "TrainConfig": "config",
    "WeakConfig": "config", "train_weak": "recipes",
    "TrainingDataError": "data", "TrainingError": "trainer",
    "train_mntp": "recipes", "train_simcse": "recipes", "train_supervised": "recipes",
}
__all__ = list(_WHERE)


def __getattr__(name: str) -> Any:
    if name in _WHERE:
        return getattr(importlib.import_module(f".{_WHERE[name]}", __name__), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
