"""Bidirectional attention, one mechanism for every family, proven per family."""
from __future__ import annotations

import pytest
import torch
import transformers

from llm2vec_rag.bidirectional import FAMILIES, attention_report, check_attention, set_bidirectional
from llm2vec_rag.errors import BidirectionalCheckError, UnsupportedModelError
from tiny_models import TINY_CONFIGS, tiny_model


def test_every_family_in_the_table_has_a_tiny_test_model():
    tested = set(TINY_CONFIGS)
    assert tested <= set(FAMILIES)
    assert {"llama", "mistral", "qwen2", "qwen3", "gemma", "gemma2", "gemma3_text", "phi3"} <= tested


@pytest.mark.parametrize("model_type", sorted(TINY_CONFIGS))
def test_first_token_sees_last_token_only_when_bidirectional(model_type):
    model = tiny_model(model_type)
    assert attention_report(model) == {"batch1": False, "padded": False}, "a fresh decoder must be causal"
    set_bidirectional(model, True)
    assert attention_report(model) == {"batch1": True, "padded": True}
    set_bidirectional(model, False)
    assert attention_report(model) == {"batch1": False, "padded": False}


@pytest.mark.parametrize("model_type", ["llama", "gemma2"])
def test_eager_attention_also_switches(model_type):
    torch.manual_seed(0)
    from tiny_models import tiny_config

    model = transformers.AutoModel.from_config(tiny_config(model_type), attn_implementation="eager").eval()
    set_bidirectional(model, True)
    assert attention_report(model) == {"batch1": True, "padded": True}


def test_config_flag_alone_is_not_trusted_modules_are_switched_too():
    model = tiny_model("llama")
    set_bidirectional(model, True)
    flags = [m.is_causal for m in model.modules() if isinstance(getattr(m, "is_causal", None), bool) and m is not model]
    assert flags and not any(flags)
    assert model.config.is_causal is False


def test_check_attention_raises_on_mismatch():
    model = tiny_model("qwen2")
    with pytest.raises(BidirectionalCheckError, match="not bidirectional"):
        check_attention(model, bidirectional=True)
    assert check_attention(model, bidirectional=False) == {"batch1": False, "padded": False}


def test_unknown_family_is_an_error_not_silently_causal():
    config = transformers.GPT2Config(n_embd=32, n_layer=1, n_head=2, vocab_size=64)
    model = transformers.AutoModel.from_config(config)
    with pytest.raises(UnsupportedModelError, match="gpt2.*supported: .*llama"):
        set_bidirectional(model, True)


def test_encoders_are_left_alone_and_cannot_be_made_causal():
    config = transformers.BertConfig(hidden_size=32, num_hidden_layers=1, num_attention_heads=2,
                                     intermediate_size=64, vocab_size=64)
    model = transformers.AutoModel.from_config(config).eval()
    set_bidirectional(model, True)
    assert attention_report(model)["batch1"] is True
    with pytest.raises(UnsupportedModelError, match="always bidirectional"):
        set_bidirectional(model, False)
