"""Training recipes as dataclasses: one source of defaults and help text for the API and the CLI.

Every field carries ``metadata["help"]``; ``cli/train.py`` turns the fields
into ``--options`` so the two never drift apart. Defaults follow the LLM2Vec
paper (BehnamGhader et al. 2024) where it is specific: MNTP masks 20% of the
tokens, SimCSE uses dropout 0.3 and temperature 0.05 (scale 20), supervised
contrastive training uses temperature 0.02 (scale 50); LoRA r=16, alpha=32.
"""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any

from ..errors import LLM2VecError
from ..families import ALL_LORA_TARGETS, LLAMA_LORA_TARGETS, lora_targets

LORA_TARGETS = LLAMA_LORA_TARGETS  # the default --lora-targets, standing for each family's own (families.py)

# Fields that may change between a run and its --resume without changing what is trained.
RESUME_FREE = frozenset({
    "output_dir", "resume", "save_every", "keep_checkpoints", "eval_every", "eval_data", "eval_split",
    "eval_max_items", "quiet", "log_every", "steps", "epochs", "device", "threads", "gradient_checkpointing",
    "eval_max_queries", "eval_at_start", "mini_batch_size",
})


def _f(default: Any, help: str, **extra: Any) -> Any:
    if isinstance(default, (list, dict, set)):
        return field(default_factory=lambda: type(default)(default), metadata={"help": help, **extra})
    return field(default=default, metadata={"help": help, **extra})


@dataclass
class TrainConfig:
    """What every recipe shares: model, LoRA, optimisation, checkpoints and evaluation."""

    data: str = _f("", "Training data (see the command's help for the accepted layouts).", required=True)
    output_dir: str = _f("", "Directory for the adapter, its card, logs and checkpoints.", required=True)
    model: str = _f("smollm2-135m", "Base model: embedded name, .gguf file, model directory or Hub id.")
    adapters: list[str] = _f([], "Adapter merged into the base before training; repeat to stack in order.",
                             multiple=True, flag="adapter")
    lora_r: int = _f(16, "LoRA rank.")
    lora_alpha: int = _f(32, "LoRA alpha (scaling = alpha / r).")
    lora_dropout: float = _f(0.05, "Dropout on the LoRA branch.")
    lora_targets: str = _f(",".join(LORA_TARGETS), "Comma-separated module names that get LoRA.")
    learning_rate: float = _f(5e-5, "Peak learning rate (AdamW).", flag="lr")
    weight_decay: float = _f(0.0, "AdamW weight decay.")
    warmup_steps: int = _f(0, "Linear warm-up steps; the rate then decays linearly to 0 at the last step.")
    steps: int = _f(0, "Optimizer steps (0: use --epochs).")
    epochs: float = _f(1.0, "Passes over the data when --steps is 0.")
    batch_size: int = _f(16, "Examples per micro-batch.")
    grad_accum: int = _f(1, "Micro-batches per optimizer step (effective batch = batch-size x grad-accum).")
    max_length: int = _f(128, "Tokens per example (longer texts are truncated).")
    max_grad_norm: float = _f(1.0, "Clip gradients to this L2 norm (0: no clipping).")
    seed: int = _f(42, "Seed for data order, masking, dropout and LoRA initialisation.")
    bf16: str = _f("auto", "bf16 autocast: auto (on where the CPU/GPU supports it fast), on, off.",
                   choices=("auto", "on", "off"))
    gradient_checkpointing: bool = _f(False, "Recompute activations in the backward pass (less memory, slower).")
    device: str = _f("auto", "auto, cpu, cuda, cuda:1, ...")
    threads: int = _f(0, "torch CPU threads (0: torch's default).")
    save_every: int = _f(100, "Write a checkpoint every N steps (0: only at the end).")
    keep_checkpoints: int = _f(2, "How many recent checkpoints to keep.")
    resume: bool = _f(False, "Continue from the latest checkpoint in --output-dir.")
    log_every: int = _f(10, "Append a line to train_log.jsonl every N steps.")
    eval_every: int = _f(0, "Evaluate every N steps on --eval-data (0: only at the end, if --eval-data).")
    eval_data: list[str] = _f([], "An STS folder (stsb, sick, sts12-16) or a BEIR folder to evaluate on; "
                                  "repeat for several.", multiple=True, flag="eval-data")
    eval_split: str = _f("dev", "Split of --eval-data (STS: train/dev/test; BEIR: qrels/<split>.tsv); "
                                "comma-separated for one split per --eval-data.")
    eval_max_items: int = _f(0, "Evaluate on at most this many pairs / documents (0: all).")
    eval_max_queries: int = _f(0, "BEIR: evaluate on this many queries (a fixed sample), their relevant "
                                  "documents and distractors up to --eval-max-items documents (0: all); "
                                  "--eval-max-items then caps only those documents, STS sets stay whole.")
    eval_at_start: bool = _f(False, "Evaluate once before the first step (the starting model's figures).")
    quiet: bool = _f(False, "No progress bar on stderr.")

    recipe = "base"

    def validate(self) -> None:
        checks = {
            "lora_r": self.lora_r >= 1, "lora_alpha": self.lora_alpha >= 1,
            "batch_size": self.batch_size >= 1, "grad_accum": self.grad_accum >= 1,
            "max_length": self.max_length >= 8, "steps": self.steps >= 0, "epochs": self.epochs > 0,
            "learning_rate": self.learning_rate > 0, "warmup_steps": self.warmup_steps >= 0,
            "save_every": self.save_every >= 0, "keep_checkpoints": self.keep_checkpoints >= 1,
            "lora_dropout": 0.0 <= self.lora_dropout < 1.0,
        }
        bad = [k for k, ok in checks.items() if not ok]
        if bad:
            raise LLM2VecError(f"invalid {self.recipe} settings: " + ", ".join(f"{k}={getattr(self, k)!r}" for k in bad))
        if not self.data:
            raise LLM2VecError("no training data given")
        if not self.output_dir:
            raise LLM2VecError("no output directory given")

    def to_dict(self) -> dict[str, Any]:
        return {"recipe": self.recipe, **dataclasses.asdict(self)}

    def targets(self, model_type: str | None = None) -> list[str]:
        """The LoRA target modules as given; the default stands for the family's (Phi-3: fused
        ``qkv_proj``/``gate_up_proj``), or without a model type every family's, filtered by the caller."""
        names = [t.strip() for t in self.lora_targets.split(",") if t.strip()]
        if tuple(names) != LORA_TARGETS:
            return names
        return list(lora_targets(model_type) if model_type else ALL_LORA_TARGETS)

    def eval_sets(self) -> list[tuple[str, str]]:
        """(folder, split) per --eval-data (one --eval-split for all, or one per folder)."""
        folders = [self.eval_data] if isinstance(self.eval_data, str) else list(self.eval_data)
        folders = [f for f in folders if f]
        splits = [s.strip() for s in self.eval_split.split(",")]
        if len(splits) == 1:
            splits = splits * len(folders)
        if len(splits) != len(folders):
            raise LLM2VecError(f"{len(folders)} --eval-data folders but {len(splits)} --eval-split values")
        return list(zip(folders, splits))


@dataclass
class MNTPConfig(TrainConfig):
    """Masked next-token prediction: the token at i is predicted from the output at i-1."""

    mask_token: str = _f("", "Token that replaces masked tokens (default: the tokenizer's mask token, else '_').")
    mask_probability: float = _f(0.2, "Share of (non-special) tokens selected for prediction.")
    learning_rate: float = _f(5e-5, "Peak learning rate (AdamW).", flag="lr")
    max_length: int = _f(256, "Tokens per packed block of text.")

    recipe = "mntp"

    def validate(self) -> None:
        super().validate()
        if not 0.0 < self.mask_probability < 1.0:
            raise LLM2VecError(f"mask_probability must be in (0, 1), got {self.mask_probability}")


@dataclass
class SimCSEConfig(TrainConfig):
    """Unsupervised SimCSE: two dropout views of a text are positives, the rest of the batch negatives."""

    attention_dropout: float = _f(0.3, "Attention dropout (the noise that makes the two views differ).")
    scale: float = _f(20.0, "Cosine similarity scale (1 / temperature; 20 = temperature 0.05).")
    pooling_mode: str = _f("mean", "Pooling of token states into the sentence vector.",
                           choices=("mean", "weighted_mean", "eos_token", "last_token", "bos_token"))
    unit: str = _f("sentence", "Split corpus lines into sentences, or keep whole lines/paragraphs.",
                   choices=("sentence", "line"))
    min_words: int = _f(4, "Skip texts with fewer words.")
    learning_rate: float = _f(3e-5, "Peak learning rate (AdamW).", flag="lr")
    batch_size: int = _f(32, "Texts per micro-batch (each encoded twice).")
    max_length: int = _f(128, "Tokens per text.")

    recipe = "simcse"

    def validate(self) -> None:
        super().validate()
        if not 0.0 <= self.attention_dropout < 1.0:
            raise LLM2VecError(f"attention_dropout must be in [0, 1), got {self.attention_dropout}")
        if self.batch_size < 2:
            raise LLM2VecError("SimCSE needs a batch of at least 2 texts (in-batch negatives)")


@dataclass
class SupervisedConfig(TrainConfig):
    """Contrastive training on (query, positive[, negatives]) with in-batch and hard negatives."""

    split: str = _f("train", "For a BEIR folder: the qrels split that gives the pairs.")
    instruction: str = _f("", "Query instruction (default: the dataset's, for BEIR names we know; else a "
                              "generic retrieval instruction). Use 'none' for no instruction.")
    scale: float = _f(50.0, "Cosine similarity scale (1 / temperature; 50 = temperature 0.02).")
    pooling_mode: str = _f("mean", "Pooling of token states into the vector.",
                           choices=("mean", "weighted_mean", "eos_token", "last_token", "bos_token"))
    negatives_per_query: int = _f(1, "Hard negatives per query in each batch (when the data has them).")
    mine_negatives: int = _f(0, "Mine this many hard negatives per query with the starting model (0: off).")
    mine_skip: int = _f(3, "When mining: skip this many top-ranked non-positive documents (likely unlabeled positives).")
    learning_rate: float = _f(1e-4, "Peak learning rate (AdamW).", flag="lr")
    batch_size: int = _f(16, "Queries per micro-batch.")
    max_length: int = _f(256, "Tokens per query or document.")
    warmup_steps: int = _f(10, "Linear warm-up steps; the rate then decays linearly to 0 at the last step.")
    mini_batch_size: int = _f(0, "Gradient caching: embed a batch in chunks of this many texts, first without "
                                 "gradients, then chunk by chunk with them (the same gradients in the memory of "
                                 "one chunk, for one extra forward pass), so --batch-size can reach 256+ (0: off).")
    cosent_scale: float = _f(20.0, "Scale of the CoSENT loss on scored pairs (a JSON 'score' field).")
    mix_sources: bool = _f(False, "Let a batch mix pairs of different 'source's (default: one source per batch).")

    recipe = "supervised"

    def validate(self) -> None:
        super().validate()
        if self.negatives_per_query < 0 or self.mine_negatives < 0 or self.mine_skip < 0 or self.mini_batch_size < 0:
            raise LLM2VecError("negatives_per_query, mine_negatives, mine_skip and mini_batch_size must be >= 0")
        if self.batch_size < 2:
            raise LLM2VecError("contrastive training needs a batch of at least 2 queries (in-batch negatives)")


@dataclass
class WeakConfig(SupervisedConfig):
    """Contrastive training on pairs made from a folder's structure (heading path -> section, title -> body,
    inverse cloze), with BM25 hard negatives: domain adaptation without labels."""

    max_words: int = _f(120, "Cut positives (sections, bodies, passages) to this many words.")
    min_words: int = _f(8, "Drop pairs whose positive has fewer words.")
    ict_per_passage: int = _f(1, "Inverse-cloze pairs per passage of 3+ sentences (a sentence -> the rest; 0: none).")
    bm25_negatives: int = _f(1, "BM25 hard negatives per pair among the folder's other positives (0: none).")
    batch_size: int = _f(32, "Queries per micro-batch.")
    max_length: int = _f(128, "Tokens per query or document.")

    recipe = "weak"

    def validate(self) -> None:
        super().validate()
        if self.max_words < 1 or self.min_words < 1 or self.ict_per_passage < 0 or self.bm25_negatives < 0:
            raise LLM2VecError("max_words and min_words must be >= 1; ict_per_passage and bm25_negatives >= 0")
