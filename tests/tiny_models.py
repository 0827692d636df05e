"""Tiny randomly initialised decoders, one per supported family (hidden 64, 2 layers)."""
from __future__ import annotations

import torch
import transformers

COMMON = dict(
    vocab_size=512, hidden_size=64, intermediate_size=128, num_hidden_layers=2,
    num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=256,
    pad_token_id=0, bos_token_id=1, eos_token_id=2,
)

# model_type -> (config class, extra arguments)
TINY_CONFIGS = {
    "llama": ("LlamaConfig", {}),
    "mistral": ("MistralConfig", {"sliding_window": 64}),
    "qwen2": ("Qwen2Config", {}),
    "qwen3": ("Qwen3Config", {"head_dim": 16}),
    "gemma": ("GemmaConfig", {"head_dim": 16}),
    "gemma2": ("Gemma2Config", {"head_dim": 16, "sliding_window": 64}),
    "gemma3_text": ("Gemma3TextConfig", {"head_dim": 16, "sliding_window": 64}),
    "phi3": ("Phi3Config", {}),
}


def tiny_config(model_type: str):
    cls_name, extra = TINY_CONFIGS[model_type]
    cls = getattr(transformers, cls_name)
    return cls(**{**COMMON, **extra})


def tiny_model(model_type: str, seed: int = 0):
    torch.manual_seed(seed)
    model = transformers.AutoModel.from_config(tiny_config(model_type))
    return model.eval()
