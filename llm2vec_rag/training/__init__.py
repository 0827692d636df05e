"""Fine-tuning decoder LLMs into encoders: MNTP, unsupervised SimCSE and supervised contrastive LoRA.

Each recipe writes a LoRA adapter directory that :meth:`LLM2Vec.from_pretrained`
loads (and stacks) directly, with a card (``README.md`` + ``training_card.json``).
"""
from __future__ import annotations

from .config import MNTPConfig, SimCSEConfig, SupervisedConfig, TrainConfig
from .data import TrainingDataError
from .recipes import train_mntp, train_simcse, train_supervised
from .trainer import TrainingError

__all__ = [
    "MNTPConfig", "SimCSEConfig", "SupervisedConfig", "TrainConfig", "TrainingDataError", "TrainingError",
    "train_mntp", "train_simcse", "train_supervised",
]
