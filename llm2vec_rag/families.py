"""What each decoder family needs, in one table per ``model_type``.

Three facts used to live in three places (the bidirectional switch, the native engine's traits,
the LoRA target modules); a family added to one and not the others failed silently, e.g. Phi-3
trained with LoRA on ``o_proj`` and ``down_proj`` only, its fused ``qkv_proj`` / ``gate_up_proj``
never matching the Llama names. :mod:`.bidirectional`, :mod:`.native` and the training config
read this table. No heavy imports here: the native engine's start-up reads it.
"""
from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class NativeFamily:
    """How a family differs from Llama in :mod:`llm2vec_rag.native` (None: transformers only)."""

    qkv_bias: bool | None = None  # fixed bias on q/k/v (Qwen2), else config.attention_bias
    o_bias: bool | None = None  # fixed bias on o_proj, else config.attention_bias
    qk_norm: bool = False  # RMSNorm on each head's query and key (Qwen3)


LLAMA_LORA_TARGETS = ("q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj")
FUSED_LORA_TARGETS = ("qkv_proj", "o_proj", "gate_up_proj", "down_proj")  # Phi-3


@dataclass(frozen=True)
class Family:
    """One decoder family: bidirectional switch, native-engine traits, LoRA targets."""

    bidirectional_flag: str | None = None  # a config switch the family reads itself, set to the bidirectional state
    native: NativeFamily | None = None  # None: the native engine does not run it
    lora_targets: tuple[str, ...] = LLAMA_LORA_TARGETS  # every attention and MLP projection

    @property
    def config_flag(self) -> str | None:  # the name bidirectional.py used
        return self.bidirectional_flag


FAMILIES: dict[str, Family] = {
    "llama": Family(native=NativeFamily()),
    "mistral": Family(native=NativeFamily()),
    "qwen2": Family(native=NativeFamily(qkv_bias=True, o_bias=False)),
    "qwen3": Family(native=NativeFamily(qk_norm=True)),
    "phi3": Family(lora_targets=FUSED_LORA_TARGETS),
    "gemma": Family(bidirectional_flag="use_bidirectional_attention"),
    "gemma2": Family(bidirectional_flag="use_bidirectional_attention"),
    "gemma3_text": Family(bidirectional_flag="use_bidirectional_attention"),
    "gemma3": Family(bidirectional_flag="use_bidirectional_attention"),
}

# Encoders that attend both ways already (sentence-transformers models and the like).
ENCODER_MODEL_TYPES = frozenset(
    {"bert", "roberta", "xlm-roberta", "mpnet", "distilbert", "modernbert", "nomic_bert",
     "deberta-v2", "electra", "camembert", "new"}
)

# every family's targets, in table order: what a model-type-blind caller filters by the model's module names
ALL_LORA_TARGETS = tuple(dict.fromkeys(t for f in FAMILIES.values() for t in f.lora_targets))


def lora_targets(model_type: str | None) -> tuple[str, ...]:
    """The family's LoRA target modules; Llama's names for a model type outside the table."""
    family = FAMILIES.get(str(model_type))
    return family.lora_targets if family is not None else LLAMA_LORA_TARGETS


def native_families() -> dict[str, NativeFamily]:
    return {mtype: f.native for mtype, f in FAMILIES.items() if f.native is not None}
