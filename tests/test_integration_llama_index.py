"""LlamaIndex embedding adapter: query/text embedding, batching, async, Settings and VectorStoreIndex retrieval."""
from __future__ import annotations

import subprocess
import sys
import time

import numpy as np
import pytest

pytest.importorskip("llama_index.core", reason="llama-index extra not installed")
from llama_index.core import Document, Settings, VectorStoreIndex  # noqa: E402
from llama_index.core.base.embeddings.base import BaseEmbedding  # noqa: E402

from llm2vec_rag.integrations import _shared  # noqa: E402
from llm2vec_rag.integrations.llama_index import LLM2VecEmbedding  # noqa: E402
from loop_ticks import count_ticks_while

TOPICS = [
    "Cells are the basic structural and functional unit of every living organism.",
    "Aircraft wings are shaped so that moving air generates lift.",
    "Rivers carry sediment from mountains down to the sea.",
    "Proteins fold into shapes that determine what they do in the body.",
]


@pytest.fixture
def clean_settings():
    """Settings is global: restore the embed model and LLM whatever a test sets."""
    saved = (Settings._embed_model, Settings._llm)
    yield Settings
    Settings._embed_model, Settings._llm = saved


def test_is_a_llama_index_embedding_with_name_and_batch_size(tiny_encoder):
    emb = LLM2VecEmbedding(encoder=tiny_encoder, embed_batch_size=3)
    assert isinstance(emb, BaseEmbedding)
    assert emb.model_name == tiny_encoder.name and emb.embed_batch_size == 3 and emb.dim == 64
    assert emb.class_name() == "LLM2VecEmbedding"
    assert "encoder" not in emb.to_dict()  # the weights never go into serialised settings


def test_query_has_instruction_texts_do_not(tiny_encoder):
    emb = LLM2VecEmbedding(model=tiny_encoder)
    text = TOPICS[0]
    assert np.allclose(emb.get_query_embedding(text), tiny_encoder.encode_queries([text])[0], atol=1e-5)
    assert np.allclose(emb.get_text_embedding(text), tiny_encoder.encode_documents([text])[0], atol=1e-5)
    assert not np.allclose(emb.get_query_embedding(text), emb.get_text_embedding(text), atol=1e-4)
    custom = LLM2VecEmbedding(encoder=tiny_encoder, query_instruction="Find rivers:")
    assert np.allclose(
        custom.get_query_embedding(text), tiny_encoder.encode_queries([text], instruction="Find rivers:")[0],
        atol=1e-5,
    )


def test_batches_by_embed_batch_size_and_keeps_order(tiny_encoder, monkeypatch):
    emb = LLM2VecEmbedding(encoder=tiny_encoder, embed_batch_size=2, normalize=True)
    seen: list[int] = []
    real = LLM2VecEmbedding._get_text_embeddings

    def spy(self, texts):
        seen.append(len(texts))
        return real(self, texts)

    monkeypatch.setattr(LLM2VecEmbedding, "_get_text_embeddings", spy)
    vectors = emb.get_text_embedding_batch(TOPICS + TOPICS[:1])
    assert seen == [2, 2, 1]  # LlamaIndex slices by embed_batch_size and calls our batched method
    assert np.allclose(np.linalg.norm(vectors, axis=1), 1.0, atol=1e-5)
    alone = tiny_encoder.encode_documents(TOPICS, normalize_embeddings=True)
    assert np.allclose(vectors[:4], alone, atol=1e-5) and np.allclose(vectors[4], alone[0], atol=1e-5)


def test_model_name_loads_once_per_process(tiny_model_dir):
    _shared.clear_encoder_cache()
    a = LLM2VecEmbedding(model_name=str(tiny_model_dir), dtype="float32", device="cpu")
    b = LLM2VecEmbedding(model=str(tiny_model_dir), dtype="float32", device="cpu", embed_batch_size=4)
    assert a.client is b.client
    assert a.get_text_embedding("a cell") == b.get_text_embedding("a cell")


async def test_async_variants_match_sync_and_do_not_block(tiny_encoder, monkeypatch):
    emb = LLM2VecEmbedding(encoder=tiny_encoder)
    expected_texts = emb.get_text_embedding_batch(TOPICS[:2])
    expected_query = emb.get_query_embedding("what is a cell?")
    real_encode = tiny_encoder.encode

    def slow_encode(*args, **kwargs):
        time.sleep(0.5)
        return real_encode(*args, **kwargs)

    monkeypatch.setattr(tiny_encoder, "encode", slow_encode)

    async def work():
        return (await emb.aget_text_embedding_batch(TOPICS[:2]), await emb.aget_query_embedding("what is a cell?"),
                await emb.aget_text_embedding(TOPICS[0]))

    (texts, query, one), ticks = await count_ticks_while(work)
    assert ticks >= 25, f"event loop blocked during embedding ({ticks} ticks in ~1.5 s)"
    assert np.allclose(texts, expected_texts, atol=1e-5) and np.allclose(query, expected_query, atol=1e-5)
    assert np.allclose(one, expected_texts[0], atol=1e-5)


def test_vector_store_index_retrieves_the_right_node_via_settings(tiny_encoder, clean_settings):
    """Plumbing check on the tiny model: with an empty instruction a query equal to a node's text is that node."""
    Settings.llm = None  # MockLLM: nothing here may need a real LLM
    Settings.embed_model = LLM2VecEmbedding(encoder=tiny_encoder, query_instruction="")
    index = VectorStoreIndex.from_documents([Document(text=t, id_=f"doc-{i}") for i, t in enumerate(TOPICS)])
    retriever = index.as_retriever(similarity_top_k=2)
    for i, topic in enumerate(TOPICS):
        hits = retriever.retrieve(topic)
        assert hits[0].node.ref_doc_id == f"doc-{i}" and hits[0].score == pytest.approx(1.0, abs=1e-4)
        assert hits[1].score < hits[0].score


@pytest.mark.slow
def test_real_model_retrieves_the_relevant_node(smollm2, clean_settings):
    """Semantics with the real model and its query instruction: paraphrased questions find their passage."""
    Settings.llm = None
    embed = LLM2VecEmbedding(encoder=smollm2)
    index = VectorStoreIndex.from_documents(
        [Document(text=t, id_=f"doc-{i}") for i, t in enumerate(TOPICS)], embed_model=embed
    )
    retriever = index.as_retriever(similarity_top_k=1, embed_model=embed)
    questions = {
        "What is the smallest unit of life?": "doc-0",
        "Where does the sand in a river end up?": "doc-2",
        "What determines the function of a protein?": "doc-3",
    }
    for question, expected in questions.items():
        assert retriever.retrieve(question)[0].node.ref_doc_id == expected, question


def test_missing_llama_index_names_the_extra():
    """With llama_index blocked, importing the adapter fails with the pip extra to install."""
    code = """
import importlib.abc, sys
class Block(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] == "llama_index":
            raise ModuleNotFoundError(f"No module named {name!r}", name=name)
sys.meta_path.insert(0, Block())
try:
    import llm2vec_rag.integrations.llama_index
except ImportError as exc:
    print("ERROR:", exc)
"""
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]
    assert 'pip install "llm2vec-rag[llama-index]"' in result.stdout
    assert "llama-index-core is not installed" in result.stdout
