"""LangChain embeddings: the langchain-tests standard suites on the tiny model, plus our own guarantees."""
from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
import pytest

pytest.importorskip("langchain_core", reason="langchain extra not installed")
from langchain_tests.integration_tests import EmbeddingsIntegrationTests  # noqa: E402
from langchain_tests.unit_tests import EmbeddingsUnitTests  # noqa: E402

from llm2vec_rag.integrations import _shared  # noqa: E402
from llm2vec_rag.integrations.langchain import LLM2VecEmbeddings  # noqa: E402
from loop_ticks import count_ticks_while


def _tiny_params(path: Path) -> dict[str, Any]:
    return {"model": str(path), "dtype": "float32", "device": "cpu", "batch_size": 4}


class TestLLM2VecEmbeddingsUnit(EmbeddingsUnitTests):
    """Standard unit suite (construction; no env-var init: the adapter reads no environment)."""

    @pytest.fixture(autouse=True)
    def _tiny_dir(self, tiny_model_dir: Path) -> None:
        self.tiny_dir = tiny_model_dir

    @property
    def embeddings_class(self) -> type[LLM2VecEmbeddings]:
        return LLM2VecEmbeddings

    @property
    def embedding_model_params(self) -> dict[str, Any]:
        return _tiny_params(self.tiny_dir)


class TestLLM2VecEmbeddingsIntegration(EmbeddingsIntegrationTests):
    """Standard integration suite: sync and async query/document embedding on a real (tiny) model."""

    @pytest.fixture(autouse=True)
    def _tiny_dir(self, tiny_model_dir: Path) -> None:
        self.tiny_dir = tiny_model_dir

    @property
    def embeddings_class(self) -> type[LLM2VecEmbeddings]:
        return LLM2VecEmbeddings

    @property
    def embedding_model_params(self) -> dict[str, Any]:
        return _tiny_params(self.tiny_dir)


# --------------------------------------------------------------------------- our own


def test_query_gets_instruction_documents_do_not(tiny_encoder):
    emb = LLM2VecEmbeddings(encoder=tiny_encoder)
    text = "Cells are the basic unit of life."
    assert np.allclose(emb.embed_query(text), tiny_encoder.encode_queries([text])[0], atol=1e-5)
    assert np.allclose(emb.embed_documents([text])[0], tiny_encoder.encode_documents([text])[0], atol=1e-5)
    # the instruction changes the vector (it is attended to), and a custom one is honoured
    assert not np.allclose(emb.embed_query(text), emb.embed_documents([text])[0], atol=1e-4)
    custom = LLM2VecEmbeddings(encoder=tiny_encoder, query_instruction="Find rivers:")
    assert np.allclose(
        custom.embed_query(text), tiny_encoder.encode_queries([text], instruction="Find rivers:")[0], atol=1e-5
    )


def test_embed_documents_types_order_and_normalisation(tiny_encoder):
    texts = ["a jet engine", "rivers carry sediment to the sea", "proteins fold"]
    emb = LLM2VecEmbeddings(model=tiny_encoder, normalize=True, batch_size=1)
    vectors = emb.embed_documents(texts)
    assert emb.client is tiny_encoder and emb.dim == 64
    assert len(vectors) == 3 and all(type(x) is float for x in vectors[0]) and len(vectors[0]) == 64
    assert np.allclose(np.linalg.norm(vectors, axis=1), 1.0, atol=1e-5)
    # batch order does not leak into results: each vector equals its text embedded alone
    for text, vector in zip(texts, vectors):
        assert np.allclose(vector, emb.embed_documents([text])[0], atol=1e-5)
    assert emb.embed_documents([]) == []


def test_same_load_arguments_load_weights_once(tiny_model_dir, monkeypatch):
    from llm2vec_rag import LLM2Vec

    _shared.clear_encoder_cache()
    calls: list[tuple] = []
    real = LLM2Vec.from_pretrained.__func__

    def counting(cls, *args, **kwargs):
        calls.append(args)
        return real(cls, *args, **kwargs)

    monkeypatch.setattr(LLM2Vec, "from_pretrained", classmethod(counting))
    a = LLM2VecEmbeddings(model=str(tiny_model_dir), dtype="float32", device="cpu")
    b = LLM2VecEmbeddings(model=str(tiny_model_dir) + "/", dtype="float32", device="cpu", batch_size=2,
                          query_instruction="other")  # encode-time options share the load
    assert len(calls) == 1 and a.client is b.client
    c = LLM2VecEmbeddings(model=str(tiny_model_dir), dtype="float32", device="cpu", max_length=16)
    assert len(calls) == 2 and c.client is not a.client


def test_rejects_non_encoder_object():
    with pytest.raises(TypeError, match="LLM2Vec"):
        LLM2VecEmbeddings(encoder=object())


async def test_async_embedding_keeps_event_loop_responsive(tiny_encoder, monkeypatch):
    """While an embed runs (slowed to 0.6 s), a ticker coroutine on the same loop keeps ticking."""
    real_encode = tiny_encoder.encode

    def slow_encode(*args, **kwargs):
        time.sleep(0.6)
        return real_encode(*args, **kwargs)

    monkeypatch.setattr(tiny_encoder, "encode", slow_encode)
    emb = LLM2VecEmbeddings(encoder=tiny_encoder)

    async def work():
        return await emb.aembed_documents(["a cell", "a wing"]), await emb.aembed_query("what is a cell?")

    (docs, query), ticks = await count_ticks_while(work)
    assert ticks >= 20, f"event loop was blocked during embedding (only {ticks} ticks in ~1.2 s)"
    monkeypatch.undo()
    assert np.allclose(docs, emb.embed_documents(["a cell", "a wing"]), atol=1e-5)
    assert np.allclose(query, emb.embed_query("what is a cell?"), atol=1e-5)


# ------------------------------------------------------------------ optional extras

BLOCK = """
import importlib.abc, sys
class Block(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] in {blocked!r}:
            raise ModuleNotFoundError(f"No module named {{name!r}}", name=name)
sys.meta_path.insert(0, Block())
"""


def run_python(code: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)


def test_core_imports_without_langchain_or_llama_index():
    """Every core and CLI module imports with both frameworks blocked, and none pulls them in."""
    code = BLOCK.format(blocked={"langchain_core", "langchain", "llama_index"}) + """
import importlib, pkgutil
skip = {"llm2vec_rag.integrations.langchain", "llm2vec_rag.integrations.llama_index",
        "llm2vec_rag.integrations.mteb"}  # optional extras, tested in their own files
names = []
for pkg in ("llm2vec_rag", "llm2vec_rag.cli", "llm2vec_rag.integrations"):  # separate dirs (package-dir)
    mod = importlib.import_module(pkg)
    names += [m.name for m in pkgutil.walk_packages(mod.__path__, pkg + ".") if m.name not in skip]
for name in names:
    importlib.import_module(name)
assert "llm2vec_rag.encoder" in names and "llm2vec_rag.cli.main" in names, names
print("imported", len(names))
"""
    result = run_python(code)
    assert result.returncode == 0, result.stderr[-3000:]
    assert "imported" in result.stdout


def test_missing_langchain_names_the_extra():
    code = BLOCK.format(blocked={"langchain_core"}) + """
try:
    import llm2vec_rag.integrations.langchain
except ImportError as exc:
    from llm2vec_rag.errors import LLM2VecError
    assert isinstance(exc, LLM2VecError)
    print("ERROR:", exc)
"""
    result = run_python(code)
    assert result.returncode == 0, result.stderr[-3000:]
    assert 'pip install "llm2vec-rag[langchain]"' in result.stdout
    assert "langchain-core is not installed" in result.stdout
