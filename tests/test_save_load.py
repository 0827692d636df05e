"""save() writes a self-contained directory that reloads to identical vectors."""
from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from llm2vec_rag import LLM2Vec
from llm2vec_rag.errors import ModelLoadError

from conftest import CORPUS


def make_adapter(model_dir, out, seed=0, r=4):
    """A LoRA adapter with random (non-zero) B so it really changes the vectors."""
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModel

    torch.manual_seed(seed)
    base = AutoModel.from_pretrained(str(model_dir))
    peft_model = get_peft_model(base, LoraConfig(r=r, lora_alpha=8, target_modules=["q_proj", "v_proj", "up_proj"]))
    with torch.no_grad():
        for name, p in peft_model.named_parameters():
            if "lora_B" in name:
                p.normal_(0, 0.5)
    peft_model.save_pretrained(str(out))
    return out


@pytest.fixture(scope="module")
def adapters(tiny_model_dir, tmp_path_factory):
    root = tmp_path_factory.mktemp("adapters")
    return make_adapter(tiny_model_dir, root / "a1", seed=1), make_adapter(tiny_model_dir, root / "a2", seed=2)


def test_save_and_reload_identical(tiny_model_dir, tmp_path):
    enc = LLM2Vec.from_pretrained(str(tiny_model_dir), dtype="float32", pooling_mode="weighted_mean",
                                  max_length=40, query_instruction="Find passages:")
    enc.save(tmp_path / "saved")
    again = LLM2Vec.from_pretrained(str(tmp_path / "saved"), dtype="float32")
    assert (again.pooling_mode, again.max_length, again.query_instruction) == ("weighted_mean", 40, "Find passages:")
    assert np.array_equal(enc.encode_queries(CORPUS[:5]), again.encode_queries(CORPUS[:5]))
    assert again.check_bidirectional()["batch1"]
    assert again.fingerprint() == enc.fingerprint()


def test_saved_config_is_causal_for_plain_transformers(tiny_encoder, tmp_path):
    tiny_encoder.save(tmp_path / "s")
    config = json.loads((tmp_path / "s" / "config.json").read_text())
    assert "is_causal" not in config
    assert tiny_encoder.model.config.is_causal is False, "saving must not change the live model"


def test_decoders_get_our_sentence_transformers_module_only(tiny_encoder, tmp_path):
    """sentence-transformers' Transformer + Pooling would run a decoder causal: silently wrong vectors.
    Our module runs the encoder itself (tests/test_save_ecosystem.py: an adapter, the reference's settings)."""
    out = tiny_encoder.save(tmp_path / "st")
    assert json.loads((out / "modules.json").read_text()) == [
        {"idx": 0, "name": "0", "path": "", "type": "llm2vec_rag.integrations.sentence_transformers.LLM2VecModule"}]
    assert not (out / "1_Pooling").exists() and not (out / "sentence_bert_config.json").exists()
    st = pytest.importorskip("sentence_transformers")
    model = st.SentenceTransformer(str(out), device="cpu", trust_remote_code=True, model_kwargs={"dtype": "float32"})
    assert model[0].encoder.engine == tiny_encoder.engine
    assert np.allclose(model.encode(CORPUS[:4]), tiny_encoder.encode(CORPUS[:4]), atol=1e-5)


def test_overwrite_is_atomic_and_leaves_no_temp_dirs(tiny_encoder, tmp_path):
    tiny_encoder.save(tmp_path / "s")
    tiny_encoder.save(tmp_path / "s")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["s"]


def test_adapter_changes_vectors_and_merging_keeps_them(tiny_model_dir, adapters):
    a1, _ = adapters
    base = LLM2Vec.from_pretrained(str(tiny_model_dir), dtype="float32").encode(CORPUS[:4])
    unmerged = LLM2Vec.from_pretrained(str(tiny_model_dir), dtype="float32", adapters=[str(a1)])
    merged = LLM2Vec.from_pretrained(str(tiny_model_dir), dtype="float32", adapters=str(a1), merge_adapters=True)
    assert hasattr(unmerged.model, "peft_config") and not hasattr(merged.model, "peft_config")
    u, m = unmerged.encode(CORPUS[:4]), merged.encode(CORPUS[:4])
    assert not np.allclose(base, u, atol=1e-3)
    assert np.allclose(u, m, atol=1e-4)
    assert unmerged.check_bidirectional()["padded"]


def test_adapters_stack_in_order(tiny_model_dir, adapters):
    a1, a2 = adapters
    one = LLM2Vec.from_pretrained(str(tiny_model_dir), dtype="float32", adapters=[a1]).encode(CORPUS[:2])
    both = LLM2Vec.from_pretrained(str(tiny_model_dir), dtype="float32", adapters=[a1, a2]).encode(CORPUS[:2])
    assert not np.allclose(one, both, atol=1e-3)
    # stacking = merge a1 into the weights, then apply a2: same as merging both
    merged = LLM2Vec.from_pretrained(str(tiny_model_dir), dtype="float32", adapters=[a1, a2], merge_adapters=True)
    assert np.allclose(both, merged.encode(CORPUS[:2]), atol=1e-4)


def test_save_with_unmerged_adapter_reloads_identical(tiny_model_dir, adapters, tmp_path):
    a1, a2 = adapters
    enc = LLM2Vec.from_pretrained(str(tiny_model_dir), dtype="float32", adapters=[a1, a2])
    enc.save(tmp_path / "with-adapter")
    assert (tmp_path / "with-adapter" / "adapter_config.json").is_file()
    again = LLM2Vec.from_pretrained(str(tmp_path / "with-adapter"), dtype="float32")
    assert np.allclose(enc.encode(CORPUS[:4]), again.encode(CORPUS[:4]), atol=1e-5)


def test_missing_and_corrupt_adapters_are_clear_errors(tiny_model_dir, adapters, tmp_path):
    with pytest.raises(ModelLoadError, match="adapter not found"):
        LLM2Vec.from_pretrained(str(tiny_model_dir), adapters=[tmp_path / "nope"])
    bad = tmp_path / "bad"
    bad.mkdir()
    with pytest.raises(ModelLoadError, match="not a LoRA adapter"):
        LLM2Vec.from_pretrained(str(tiny_model_dir), adapters=[bad])
    (bad / "adapter_config.json").write_text("{not json")
    with pytest.raises(ModelLoadError, match="corrupt adapter config"):
        LLM2Vec.from_pretrained(str(tiny_model_dir), adapters=[bad])
    import shutil

    broken = tmp_path / "broken"
    shutil.copytree(adapters[0], broken)
    (broken / "adapter_model.safetensors").write_bytes(b"\x00garbage" * 10)
    with pytest.raises(ModelLoadError, match="cannot load adapter"):
        LLM2Vec.from_pretrained(str(tiny_model_dir), adapters=[broken])


def test_merged_cache_build_is_quiet(tiny_model_dir, adapters, tmp_path, monkeypatch, capfd):
    """Building the merged-adapter cache prints no library progress bars or deprecation noise."""
    from llm2vec_rag.merged import merged_dir

    monkeypatch.setenv("LLM2VEC_RAG_CACHE", str(tmp_path / "cache"))
    out = merged_dir("tiny", tiny_model_dir, list(adapters))
    assert (out / "config.json").is_file()
    err = capfd.readouterr().err
    assert "Loading weights" not in err and "Writing model shards" not in err and "Warning" not in err, err
