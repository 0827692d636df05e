"""One per-family table: every supported family trains LoRA on every projection the table names."""
from __future__ import annotations

import json

import pytest
from safetensors import safe_open

from llm2vec_rag import bidirectional, families, native
from llm2vec_rag.training import SimCSEConfig, train_simcse
from llm2vec_rag.training.config import TrainConfig

from conftest import CORPUS
from tiny_models import TINY_CONFIGS

FAST = dict(bf16="off", threads=1, quiet=True, save_every=0, log_every=1)


def test_every_module_reads_the_one_table():
    assert bidirectional.FAMILIES is families.FAMILIES
    assert native.NATIVE_FAMILIES == {k: f.native for k, f in families.FAMILIES.items() if f.native}
    assert set(TINY_CONFIGS) <= set(families.FAMILIES)
    assert families.lora_targets("phi3") == ("qkv_proj", "o_proj", "gate_up_proj", "down_proj")
    assert families.lora_targets("some-new-type") == families.LLAMA_LORA_TARGETS
    default = TrainConfig(data="x", output_dir="y")
    assert default.targets("phi3") == list(families.lora_targets("phi3"))
    assert TrainConfig(data="x", output_dir="y", lora_targets="q_proj,v_proj").targets("phi3") == ["q_proj", "v_proj"]


@pytest.mark.parametrize("model_type", sorted(TINY_CONFIGS))
def test_training_puts_lora_on_every_intended_projection(model_type, tiny_family_dirs, tmp_path):
    corpus = tmp_path / "corpus.txt"
    corpus.write_text("\n".join(CORPUS) + "\n", encoding="utf-8")
    out = tmp_path / "simcse"
    train_simcse(SimCSEConfig(data=str(corpus), output_dir=str(out), model=str(tiny_family_dirs[model_type]),
                              steps=1, batch_size=4, max_length=16, unit="line", **FAST))
    intended = set(families.lora_targets(model_type))
    config = json.loads((out / "adapter_config.json").read_text())
    assert set(config["target_modules"]) == intended
    with safe_open(str(out / "adapter_model.safetensors"), "pt") as f:
        keys = list(f.keys())
    layers = json.loads((tiny_family_dirs[model_type] / "config.json").read_text())["num_hidden_layers"]
    for target in intended:
        for layer in range(layers):
            assert any(f"layers.{layer}." in k and f".{target}.lora_A" in k for k in keys), (model_type, target, layer)
