"""LangChain vector store over the toolkit's index: the langchain-tests standard suite, plus persistence and MMR."""
from __future__ import annotations

import asyncio
import threading
from collections.abc import Generator
from pathlib import Path

import numpy as np
import pytest

from llm2vec_rag.errors import LLM2VecError

pytest.importorskip("langchain_core", reason="langchain extra not installed")
from langchain_core.documents import Document  # noqa: E402
from langchain_core.embeddings import DeterministicFakeEmbedding  # noqa: E402
from langchain_core.vectorstores import VectorStore  # noqa: E402
from langchain_tests.integration_tests import VectorStoreIntegrationTests  # noqa: E402

from llm2vec_rag.errors import IndexModelMismatchError, IndexNotFoundError  # noqa: E402
from llm2vec_rag.integrations.langchain import LLM2VecEmbeddings, LLM2VecVectorStore  # noqa: E402
from loop_ticks import count_ticks_while

TOPICS = [
    "Cells are the basic structural and functional unit of every living organism.",
    "Aircraft wings are shaped so that moving air generates lift.",
    "Rivers carry sediment from mountains down to the sea.",
    "Proteins fold into shapes that determine what they do in the body.",
]


class TestLLM2VecVectorStoreStandard(VectorStoreIntegrationTests):
    """The standard suite (sync, async, get_by_ids) with its own fake embeddings, as the suite intends."""

    @pytest.fixture()
    def vectorstore(self, tmp_path: Path) -> Generator[VectorStore, None, None]:  # type: ignore[override]
        store = LLM2VecVectorStore(self.get_embeddings(), tmp_path / "store")
        try:
            yield store
        finally:
            store.close()


class TestLLM2VecVectorStoreTemporary(VectorStoreIntegrationTests):
    """Same suite on a store with no path (a temporary directory), embedded by the tiny LLM2Vec."""

    @pytest.fixture()
    def vectorstore(self, tiny_encoder) -> Generator[VectorStore, None, None]:  # type: ignore[override]
        store = LLM2VecVectorStore(LLM2VecEmbeddings(encoder=tiny_encoder, query_instruction=""))
        try:
            yield store
        finally:
            store.close()
            assert not store.path.exists()


# --------------------------------------------------------------------------- our own


@pytest.fixture
def tiny_embeddings(tiny_encoder) -> LLM2VecEmbeddings:
    return LLM2VecEmbeddings(encoder=tiny_encoder)


def test_persists_without_pickle_and_reloads(tmp_path, tiny_embeddings):
    path = tmp_path / "kb"
    docs = [Document(page_content=t, metadata={"topic": i, "tags": ["a", "b"]}, id=f"d{i}")
            for i, t in enumerate(TOPICS)]
    store = LLM2VecVectorStore.from_documents(docs, tiny_embeddings, path=path)
    before = store.similarity_search_with_score(TOPICS[2], k=4)
    store.close()
    files = sorted(p.name for p in path.iterdir())
    assert not any(name.endswith((".pkl", ".pickle")) for name in files)
    assert any(name.endswith(".faiss") for name in files) and "meta.sqlite" in files

    again = LLM2VecVectorStore.load(path, tiny_embeddings)
    try:
        assert len(again) == 4
        after = again.similarity_search_with_score(TOPICS[2], k=4)
        assert [d.id for d, _ in after] == [d.id for d, _ in before]
        assert np.allclose([s for _, s in after], [s for _, s in before], atol=1e-5)
        assert again.get_by_ids(["d1"]) == [docs[1]]
    finally:
        again.close()


def test_load_refuses_other_embeddings_and_missing_dirs(tmp_path, tiny_embeddings):
    path = tmp_path / "kb"
    LLM2VecVectorStore.from_texts(TOPICS, tiny_embeddings, path=path).close()
    with pytest.raises(IndexModelMismatchError):
        LLM2VecVectorStore.load(path, DeterministicFakeEmbedding(size=64))
    with pytest.raises(IndexNotFoundError):
        LLM2VecVectorStore.load(tmp_path / "nothing", tiny_embeddings)


def test_search_uses_query_instruction_and_cosine_scores(tiny_encoder):
    emb = LLM2VecEmbeddings(encoder=tiny_encoder, query_instruction="")
    with LLM2VecVectorStore.from_texts(TOPICS, emb, ids=["c", "w", "r", "p"]) as store:
        for text, want in zip(TOPICS, "cwrp"):
            (doc, score), *rest = store.similarity_search_with_score(text, k=4)
            assert doc.id == want and score == pytest.approx(1.0, abs=1e-4)
            assert all(s < score for _, s in rest)
        relevance = store.similarity_search_with_relevance_scores(TOPICS[0], k=2)
        assert relevance[0][1] == pytest.approx(1.0, abs=1e-4) and 0.0 <= relevance[1][1] < 1.0
    # with the default instruction the query vector is the instructed one, not the document's
    with LLM2VecVectorStore.from_texts(TOPICS, LLM2VecEmbeddings(encoder=tiny_encoder)) as store:
        expected = tiny_encoder.encode_queries([TOPICS[0]], normalize_embeddings=True)[0]
        top = store.similarity_search_with_score(TOPICS[0], k=1, mode="dense")[0]
        doc_vec = tiny_encoder.encode_documents([top[0].page_content], normalize_embeddings=True)[0]
        assert top[1] == pytest.approx(float(expected @ doc_vec), abs=1e-4)
        # the default (hybrid) ranks by the fused score, in [0, 1]
        fused = store.similarity_search_with_score(TOPICS[0], k=1)[0]
        assert fused[0].id == top[0].id and 0.0 <= fused[1] <= 1.0


def test_store_modes_and_retriever(tiny_embeddings):
    texts = ["Quagga stripes confuse biting flies.", "Aircraft wings generate lift.", "Rivers carry sediment."]
    with LLM2VecVectorStore.from_texts(texts, tiny_embeddings, ids=["z", "w", "r"]) as store:
        for mode in ("hybrid", "dense", "lexical"):
            docs = store.similarity_search("quagga flies", k=3, mode=mode)
            assert docs, mode
        assert [d.id for d in store.similarity_search("quagga flies", k=3, mode="lexical")] == ["z"]
        retriever = store.as_retriever(search_kwargs={"k": 3, "mode": "lexical"})
        assert [d.id for d in retriever.invoke("aircraft lift")] == ["w"]
        scored = store.similarity_search_with_relevance_scores("aircraft", k=3, mode="lexical")
        assert scored[0][0].id == "w" and 0.0 < scored[0][1] < 1.0
        hybrid = store.similarity_search_with_relevance_scores("aircraft", k=3)
        assert all(0.0 <= s <= 1.0 for _, s in hybrid)
        with pytest.raises(LLM2VecError):
            store.similarity_search("aircraft", mode="bm25")
    with LLM2VecVectorStore.from_texts(texts, tiny_embeddings, mode="lexical") as store:
        assert len(store.similarity_search("sediment", k=3)) == 1


def test_filter_by_metadata_and_callable(tiny_embeddings):
    metas = [{"kind": "bio"}, {"kind": "physics"}, {"kind": "geo"}, {"kind": "bio"}]
    with LLM2VecVectorStore.from_texts(TOPICS, tiny_embeddings, metas) as store:
        bio = store.similarity_search("anything", k=4, filter={"kind": "bio"})
        assert sorted(d.page_content for d in bio) == sorted([TOPICS[0], TOPICS[3]])
        geo = store.similarity_search("anything", k=4, filter=lambda m: m["kind"] == "geo")
        assert [d.page_content for d in geo] == [TOPICS[2]]


def test_max_marginal_relevance_prefers_diversity(tiny_encoder):
    emb = LLM2VecEmbeddings(encoder=tiny_encoder, query_instruction="")
    texts = [TOPICS[0], TOPICS[0] + " ", TOPICS[0] + "  ", TOPICS[2]]  # near-duplicates of one text
    with LLM2VecVectorStore.from_texts(texts, emb, ids=["a", "a2", "a3", "r"]) as store:
        plain = [d.id for d in store.similarity_search(TOPICS[0], k=2)]
        assert plain[0] == "a" and plain[1] in {"a2", "a3"}
        mmr = [d.id for d in store.max_marginal_relevance_search(TOPICS[0], k=2, fetch_k=4, lambda_mult=0.1)]
        assert mmr == ["a", "r"]
        by_vec = store.max_marginal_relevance_search_by_vector(emb.embed_query(TOPICS[0]), k=2, fetch_k=4,
                                                               lambda_mult=0.1)
        assert [d.id for d in by_vec] == ["a", "r"]


def test_retriever_and_delete_all(tiny_encoder):
    emb = LLM2VecEmbeddings(encoder=tiny_encoder, query_instruction="")
    with LLM2VecVectorStore.from_texts(TOPICS, emb, ids=["c", "w", "r", "p"]) as store:
        retriever = store.as_retriever(search_kwargs={"k": 1})
        assert [d.id for d in retriever.invoke(TOPICS[3])] == ["p"]
        mmr = store.as_retriever(search_type="mmr", search_kwargs={"k": 2, "fetch_k": 4})
        assert len(mmr.invoke(TOPICS[1])) == 2
        assert store.delete(["w", "missing"]) and len(store) == 3
        store.delete()
        assert len(store) == 0 and store.similarity_search(TOPICS[0]) == []


async def test_async_search_does_not_block_the_loop(tiny_embeddings):
    """Async calls run off the loop, and the index (SQLite) stays on its own thread."""
    store = LLM2VecVectorStore(tiny_embeddings)
    try:
        ids = await store.aadd_texts(TOPICS)

        async def work():
            return (await asyncio.gather(*(store.asimilarity_search(t, k=1) for t in TOPICS)),
                    await store.aget_by_ids(ids))

        (results, found), ticks = await count_ticks_while(work, interval=0)
        assert ticks > 0 and len(results) == 4 and [d.id for d in found] == ids
        assert store._worker.executor._threads and all(t is not threading.current_thread()
                                                       for t in store._worker.executor._threads)
    finally:
        store.close()


def test_store_directory_is_a_toolkit_index(tmp_path, tiny_model_dir):
    """A store built with LLM2VecEmbeddings records its model: Index.load (and the CLI) can search it alone."""
    from llm2vec_rag import Index

    emb = LLM2VecEmbeddings(model=str(tiny_model_dir), dtype="float32", device="cpu", query_instruction="")
    LLM2VecVectorStore.from_texts(TOPICS, emb, ids=["c", "w", "r", "p"], path=tmp_path / "kb").close()
    index = Index.load(tmp_path / "kb")
    try:
        assert len(index) == 4 and index.query_instruction == ""
        assert [h.id for h in index.search(TOPICS[2], k=1)] == ["r"]
    finally:
        index.close()
