"""save() writes what llm2vec 0.2.3 (transformers 4.44, peft 0.12) reads right, and nothing that loads wrong.

The reference itself runs in its own venv (benchmarks/parity_reference.py --published loads our saved
directory there and compares vectors); here every file is checked against what those versions accept.
"""
from __future__ import annotations

import json
import shutil

import numpy as np
import pytest

from llm2vec_rag import LLM2Vec
from llm2vec_rag.saving import PEFT_0_12_LORA_FIELDS

from conftest import CORPUS
from test_save_load import make_adapter

TEXTS = CORPUS[:3] + [["Given a claim, retrieve documents:", "cells divide"]]


@pytest.fixture(scope="module")
def adapters(tiny_model_dir, tmp_path_factory):
    root = tmp_path_factory.mktemp("eco-adapters")
    return make_adapter(tiny_model_dir, root / "a1", seed=1), make_adapter(tiny_model_dir, root / "a2", seed=2)


@pytest.fixture(scope="module")
def saved(tiny_model_dir, adapters, tmp_path_factory):
    enc = LLM2Vec.from_pretrained(str(tiny_model_dir), dtype="float32", adapters=[str(a) for a in adapters],
                                  skip_instruction=False, doc_max_length=300, pooling_mode="weighted_mean")
    out = enc.save(tmp_path_factory.mktemp("eco") / "saved")
    return enc, out


def test_files_the_reference_stack_reads(saved):
    enc, out = saved
    reference = json.loads((out / "llm2vec_config.json").read_text())
    assert reference == {"pooling_mode": "weighted_mean", "max_length": enc.max_length, "doc_max_length": 300,
                         "skip_instruction": False}, "llm2vec 0.2.3 passes every key to its constructor"
    config = json.loads((out / "config.json").read_text())
    assert config["rope_theta"] == config["rope_parameters"]["rope_theta"] and "torch_dtype" in config
    assert "is_causal" not in config
    tok = json.loads((out / "tokenizer_config.json").read_text())
    assert tok["tokenizer_class"] == "PreTrainedTokenizerFast"
    merges = json.loads((out / "tokenizer.json").read_text())["model"]["merges"]
    assert merges and all(isinstance(m, str) and len(m.split(" ")) == 2 for m in merges)
    adapter = json.loads((out / "adapter_config.json").read_text())
    assert set(adapter) <= PEFT_0_12_LORA_FIELDS, set(adapter) - PEFT_0_12_LORA_FIELDS
    assert adapter["base_model_name_or_path"] == str(out.resolve()), "base + adapter in one folder, as published"
    modules = json.loads((out / "modules.json").read_text())
    assert [m["type"] for m in modules] == ["llm2vec_rag.integrations.sentence_transformers.LLM2VecModule"], \
        "a decoder gets our module, never sentence-transformers' causal Transformer"


def test_reload_is_identical_and_keeps_the_reference_settings(saved):
    enc, out = saved
    again = LLM2Vec.from_pretrained(str(out), dtype="float32")
    assert (again.skip_instruction, again.doc_max_length, again.pooling_mode) == (False, 300, "weighted_mean")
    assert hasattr(again.model, "peft_config"), "the last adapter stays unmerged"
    assert np.allclose(enc.encode(TEXTS), again.encode(TEXTS), atol=1e-5)
    assert again.fingerprint() == enc.fingerprint()


def test_without_our_settings_files_the_folder_is_still_not_a_sentence_transformers_layout(saved, tmp_path):
    """Our modules.json names our module: with llm2vec_rag.json gone, the folder loads the published way."""
    from llm2vec_rag.resolve import resolve_model

    _, out = saved
    copy = tmp_path / "no-settings"
    shutil.copytree(out, copy)
    for name in ("llm2vec_rag.json", "llm2vec_config.json"):
        (copy / name).unlink()
    resolved = resolve_model(copy)
    assert resolved.kind == "hf-dir" and resolved.adapters == [copy], resolved


def test_transformers_alone_reads_the_folder(saved):
    """transformers 5 finds the adapter beside the weights and applies it (the reference's route too)."""
    from transformers import AutoModel, AutoTokenizer

    _, out = saved
    model = AutoModel.from_pretrained(str(out))
    assert hasattr(model, "peft_config")
    assert type(AutoTokenizer.from_pretrained(str(out))).__name__ in ("PreTrainedTokenizerFast", "TokenizersBackend")


def test_format_1_folders_still_load(saved, tmp_path):
    """Earlier saves: settings (with format_version) in llm2vec_config.json, the adapter in adapter/."""
    enc, out = saved
    old = tmp_path / "format1"
    shutil.copytree(out, old)
    (old / "adapter").mkdir()
    for name in ("adapter_config.json", "adapter_model.safetensors"):
        shutil.move(str(old / name), str(old / "adapter" / name))
    settings = json.loads((old / "llm2vec_rag.json").read_text())
    (old / "llm2vec_rag.json").unlink()
    (old / "llm2vec_config.json").write_text(json.dumps({**settings, "format_version": 1, "adapters": ["adapter"]}))
    again = LLM2Vec.from_pretrained(str(old), dtype="float32")
    assert np.allclose(enc.encode(TEXTS), again.encode(TEXTS), atol=1e-5)


def test_bidirectional_encoders_keep_the_sentence_transformers_files(tmp_path):
    """A BERT-like encoder attends both ways already: sentence-transformers reproduces it, so its files stay."""
    import transformers

    from conftest import build_tiny_tokenizer

    src = tmp_path / "bert"
    cfg = transformers.BertConfig(vocab_size=512, hidden_size=32, num_hidden_layers=1, num_attention_heads=2,
                                  intermediate_size=64, max_position_embeddings=128)
    transformers.AutoModel.from_config(cfg).save_pretrained(src)
    build_tiny_tokenizer().save_pretrained(src)
    out = LLM2Vec.from_pretrained(str(src), dtype="float32").save(tmp_path / "saved-bert")
    assert json.loads((out / "modules.json").read_text())[0]["type"].endswith("Transformer")


def test_reference_save_keywords(tiny_model_dir, adapters, tmp_path):
    """llm2vec 0.2.3's save(output_path, merge_before_save=False, save_config=True), with its meaning."""
    enc = LLM2Vec.from_pretrained(str(tiny_model_dir), dtype="float32", adapters=[str(a) for a in adapters])
    before = enc.encode(TEXTS)
    assert hasattr(enc.model, "peft_config")
    out = enc.save(tmp_path / "merged", merge_before_save=True)
    assert not (out / "adapter_config.json").exists() and not hasattr(enc.model, "peft_config"), \
        "merged for good, as the reference does"
    assert np.allclose(enc.encode(TEXTS), before, atol=1e-4)
    again = LLM2Vec.from_pretrained(str(out), dtype="float32")
    assert np.allclose(again.encode(TEXTS), before, atol=1e-4) and again.fingerprint() == enc.fingerprint()
    # the reference's positional order, and no settings files: a reload takes the defaults
    custom = LLM2Vec.from_pretrained(str(tiny_model_dir), dtype="float32", adapters=[str(adapters[0])],
                                     pooling_mode="weighted_mean")
    bare = custom.save(tmp_path / "bare", False, False)
    assert not (bare / "llm2vec_config.json").exists() and not (bare / "llm2vec_rag.json").exists()
    assert (bare / "adapter_config.json").exists(), "merge_before_save=False keeps the adapter"
    moved = tmp_path / "elsewhere" / "bare"  # the adapter names the old absolute path: we do not need it
    moved.parent.mkdir()
    shutil.move(str(bare), str(moved))
    reloaded = LLM2Vec.from_pretrained(str(moved), dtype="float32")
    assert reloaded.pooling_mode == "mean"
    same_settings = LLM2Vec.from_pretrained(str(tiny_model_dir), dtype="float32", adapters=[str(adapters[0])])
    assert np.allclose(reloaded.encode(TEXTS), same_settings.encode(TEXTS), atol=1e-5)
    full = custom.save(tmp_path / "full")
    shutil.move(str(full), str(tmp_path / "elsewhere" / "full"))
    again = LLM2Vec.from_pretrained(str(tmp_path / "elsewhere" / "full"), dtype="float32")
    assert np.allclose(again.encode(TEXTS), custom.encode(TEXTS), atol=1e-5)


def test_sentence_transformers_loads_our_vectors_or_refuses(saved):
    """sentence-transformers reads a saved decoder through our module: our vectors, or a clear error."""
    st = pytest.importorskip("sentence_transformers")
    import torch

    enc, out = saved
    with pytest.raises(ValueError, match="trust_remote_code"):
        st.SentenceTransformer(str(out), device="cpu")
    ours = enc.encode(TEXTS, convert_to_numpy=True)
    default_dtype = st.SentenceTransformer(str(out), device="cpu", trust_remote_code=True).encode(TEXTS)
    cos = (ours * default_dtype).sum(1) / np.linalg.norm(ours, axis=1) / np.linalg.norm(default_dtype, axis=1)
    assert cos.min() > 0.999, cos  # dtype "auto", as LLM2Vec.from_pretrained(folder): bf16 on some CPUs
    model = st.SentenceTransformer(str(out), device="cpu", trust_remote_code=True,
                                   model_kwargs={"dtype": torch.float32})
    assert np.allclose(ours, model.encode(TEXTS, convert_to_numpy=True), atol=1e-5)
    assert model.get_sentence_embedding_dimension() == enc.dim
    queries = ["what do cells do", "how do planes fly"]
    by_prompt = model.encode(queries, prompt_name="query", convert_to_numpy=True)
    assert np.allclose(by_prompt, enc.encode_queries(queries, convert_to_numpy=True), atol=1e-4)
    assert np.allclose(model.encode(queries, prompt_name="document"), enc.encode_documents(queries), atol=1e-4)
    # older sentence-transformers glue the prompt onto the text and pass its length: refused, never pooled
    module = model[0]
    features = module.tokenize([enc.query_instruction + " " + q for q in queries])
    features["prompt_length"] = len(module.tokenize([enc.query_instruction])["input_ids"][0]) - 1
    with pytest.raises(Exception, match="pass \\[instruction, text\\] pairs"):
        module(features)
    empty = module.tokenize(queries)
    empty["prompt_length"] = module.tokenize([""])["input_ids"].shape[-1] - 1  # an empty prompt is no prompt
    with torch.inference_mode():
        assert np.allclose(module(empty)["sentence_embedding"].numpy(), enc.encode(queries), atol=1e-4)
