"""The Qdrant backend (local mode) behind the same Index API, CLI and LangChain store as FAISS.

The core Index tests of ``test_index.py`` run again here with every new index on Qdrant;
then what only Qdrant has: the collection's own payload, switching backends without
re-embedding, repair after a kill, and clear errors for bad settings.
"""
from __future__ import annotations

import json
import signal
from collections.abc import Generator
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("qdrant_client", reason="qdrant extra not installed")
from qdrant_client import QdrantClient  # noqa: E402

from fakes import FakeEncoder  # noqa: E402
from llm2vec_rag import Index  # noqa: E402
from llm2vec_rag.errors import LLM2VecError  # noqa: E402
from llm2vec_rag.index.records import stable_id  # noqa: E402
from test_index import (build, docs, encoder, test_add_texts_get_delete_vectors,  # noqa: E402,F401
                        test_bad_queries, test_build_and_search, test_changed_chunk_settings_rechunk_everything,
                        test_empty_and_missing_folders_change_nothing, test_incremental_reindex_embeds_only_changes,
                        test_other_model_is_refused, test_real_tiny_encoder_end_to_end, test_rebuild_starts_over,
                        test_where_filters)
from test_index_crash import run_index, write_corpus  # noqa: E402
from test_hybrid import hybrid_index  # noqa: E402,F401  (hybrid search runs on Qdrant too)
from test_hybrid import (test_lexical_table_follows_deletes_and_replacements, test_modes_through_the_python_api,  # noqa: E402,F401
                         test_where_filters_both_sides)
from test_search_cli import invoke, one_line_error, runner  # noqa: E402,F401


@pytest.fixture(autouse=True)
def qdrant_by_default(monkeypatch):
    """Every index these tests create without naming a backend is a local Qdrant one."""
    original = Index.open.__func__

    def open_qdrant(cls, path=".llm2vec-rag", encoder=None, **options):
        options.setdefault("backend", "qdrant")
        return original(cls, path, encoder, **options)

    monkeypatch.setattr(Index, "open", classmethod(open_qdrant))


def qdrant_ids(index_dir: Path, collection: str, owner: str) -> set[int]:
    """The chunk ids this index has in the (local) collection."""
    client = QdrantClient(path=str(index_dir / "qdrant"))
    try:
        points, ids, offset = [], set(), None
        while True:
            points, offset = client.scroll(collection, limit=256, offset=offset, with_payload=True)
            ids |= {int(p.payload["chunk_id"]) for p in points if p.payload["llm2vec_rag_index"] == owner}
            if offset is None:
                return ids
    finally:
        client.close()


def test_backend_is_recorded_and_collection_is_self_describing(docs, tmp_path, encoder):
    with build(docs, tmp_path, encoder) as index:
        stats = index.stats()
        assert stats["backend"] == "qdrant" and stats["qdrant_url"] is None
        collection, owner = stats["qdrant_collection"], stats["qdrant_owner"]
        assert collection.startswith("llm2vec-rag-ix-")
        assert not list((tmp_path / "ix").glob("vectors-*.faiss"))  # no FAISS file on this backend
        sqlite_ids = set(index.meta.all_ids().tolist())
        hit = index.search("bake bread in the oven", k=1)[0]
        point_id = index.backend.point_id(stable_id(hit.id))
    assert qdrant_ids(tmp_path / "ix", collection, owner) == sqlite_ids
    # Other tools can read the collection directly (LangChain's Qdrant layout: page_content + metadata).
    client = QdrantClient(path=str(tmp_path / "ix" / "qdrant"))
    try:
        point = client.retrieve(collection, [point_id], with_payload=True, with_vectors=True)[0]
    finally:
        client.close()
    assert point.payload["page_content"] == hit.text and point.payload["doc_id"] == hit.id
    assert point.payload["metadata"]["rel"] == "notes/cooking.txt"
    vector = np.asarray(point.vector, dtype=np.float32)
    assert np.isclose(np.linalg.norm(vector), 1.0, atol=1e-5)


def test_switching_backends_copies_vectors_without_reembedding(docs, tmp_path, encoder):
    build(docs, tmp_path, encoder, backend="faiss").close()
    assert list((tmp_path / "ix").glob("vectors-*.faiss"))
    calls = encoder.calls
    query = np.asarray(FakeEncoder().encode("rivers carry sediment to the sea"))
    with Index.load(tmp_path / "ix", encoder) as index:
        expected = [(h.id, round(h.score, 5)) for h in index.search_by_vector(query, k=2)]
    assert expected[1][1] > 0  # no ties in the expected ranking
    notes: list[str] = []
    with Index.open(tmp_path / "ix", encoder, backend="qdrant", log=notes.append) as index:
        assert index.stats()["backend"] == "qdrant"
        assert [(h.id, round(h.score, 5)) for h in index.search_by_vector(query, k=2)] == expected
    assert encoder.calls == calls  # copied from SQLite, nothing embedded again
    assert any("no re-embedding" in n for n in notes)
    assert not list((tmp_path / "ix").glob("vectors-*.faiss"))
    with Index.open(tmp_path / "ix", encoder, backend="faiss", log=lambda m: None) as index:
        assert [(h.id, round(h.score, 5)) for h in index.search_by_vector(query, k=2)] == expected
    assert encoder.calls == calls
    client = QdrantClient(path=str(tmp_path / "ix" / "qdrant"))
    try:  # moving back to FAISS took this index's points out of Qdrant (the empty collection is dropped)
        assert not client.get_collections().collections
    finally:
        client.close()


def test_index_types_on_qdrant(docs, tmp_path, encoder):
    for kind in ("flat", "hnsw", "sq8"):
        with build(docs, tmp_path, encoder, index_type=kind, rebuild=True) as index:
            assert index.search("bake bread in the oven", k=1)[0].source.endswith("cooking.txt")
    with pytest.raises(LLM2VecError, match="not available with the qdrant backend"):
        build(docs, tmp_path, encoder, index_type="ivf-pq", rebuild=True)


@pytest.mark.parametrize("stage", ["committed:2", "qdrant-applied:1"])
def test_kill_mid_update_is_repaired_on_next_run(tmp_path, stage):
    docs, ix = tmp_path / "docs", tmp_path / "ix"
    write_corpus(docs, n_files=40)
    assert run_index(docs, ix, None, "--backend", "qdrant").returncode == 0
    write_corpus(docs, n_files=40, version=1)
    killed = run_index(docs, ix, stage)  # the recorded backend: no --backend needed
    assert killed.returncode == -signal.SIGKILL, killed.stderr
    done = run_index(docs, ix)
    assert done.returncode == 0, done.stderr
    with Index.load(ix, FakeEncoder(), log=lambda m: None) as index:
        info = index.meta.info()
        assert info["backend_rows_version"] == info["rows_version"]
        stats, sqlite_ids = index.stats(), set(index.meta.all_ids().tolist())
        top = index.search("file 3 version 1 paragraph 2", k=1)[0]
        assert "version 1" in top.text
    assert qdrant_ids(ix, stats["qdrant_collection"], stats["qdrant_owner"]) == sqlite_ids


def test_indexes_sharing_a_collection_keep_to_their_own_points(tmp_path, encoder):
    """Two index folders (say two machines) write into one collection; each sees and rebuilds only its own."""
    from test_index import write_docs

    shared = f"file://{tmp_path / 'shared-qdrant'}"
    a_docs = write_docs(tmp_path / "a", {"bread.md": "Bake the bread in a hot oven.", "oven.md": "The oven is hot."})
    b_docs = write_docs(tmp_path / "b", {"rivers.md": "Rivers carry sediment to the sea.",
                                         "bread.md": "Bake the bread in a hot oven."})  # same name, other machine
    opts = dict(encoder=encoder, backend="qdrant", url=shared, collection="shared", progress=False, log=lambda m: None)
    Index.build(a_docs, path=tmp_path / "ix-a", **opts).close()
    Index.build(b_docs, path=tmp_path / "ix-b", **opts).close()
    with Index.load(tmp_path / "ix-a", encoder) as a:
        assert a.backend.count() == 2
        assert {h.source for h in a.search("bake bread oven rivers sediment", k=10)} == {
            str(a_docs / "bread.md"), str(a_docs / "oven.md")}
    # Rebuilding b (a new index type copies its vectors again) leaves a's points alone.
    Index.build(b_docs, path=tmp_path / "ix-b", index_type="hnsw", **opts).close()
    client = QdrantClient(path=str(tmp_path / "shared-qdrant"))
    try:
        assert client.count("shared", exact=True).count == 4
    finally:
        client.close()
    with Index.load(tmp_path / "ix-a", encoder) as a:
        assert len(a.search("bake bread", k=10)) == 2


def test_cli_index_and_search_with_qdrant(runner, docs, tmp_path):
    ix = tmp_path / "ix"
    first = invoke(runner, "index", docs, "--index", ix, "--model", "fake:", "--backend", "qdrant", "--json",
                   "--quiet")
    assert first.exit_code == 0, first.output
    report = json.loads(first.stdout)
    assert report["index"]["backend"] == "qdrant" and report["added"] == 5
    again = json.loads(invoke(runner, "index", docs, "--index", ix, "--json", "--quiet").stdout)
    assert again["unchanged"] == 5 and again["index"]["backend"] == "qdrant"
    found = invoke(runner, "search", "bake bread in a hot oven", "--index", ix, "--json", "--k", "2")
    assert found.exit_code == 0, found.output
    hits = [json.loads(line) for line in found.stdout.splitlines()]
    assert [h["rank"] for h in hits] == [1, 2]
    assert hits[0]["source"].endswith("cooking.txt")


def test_cli_bad_qdrant_settings_are_one_line_errors(runner, docs, tmp_path):
    ix = tmp_path / "ix"
    one_line_error(invoke(runner, "index", docs, "--index", ix, "--model", "fake:", "--backend", "qdrant",
                          "--url", "localhost:6333", "--quiet"), "--url must be a Qdrant server address")
    one_line_error(invoke(runner, "index", docs, "--index", ix, "--model", "fake:", "--url", "http://127.0.0.1:9",
                          "--quiet"), "cannot open http://127.0.0.1:9")
    one_line_error(invoke(runner, "index", docs, "--index", ix, "--model", "fake:", "--backend", "faiss",
                          "--url", "http://127.0.0.1:9", "--quiet"), "settings of the qdrant backend")
    one_line_error(invoke(runner, "index", docs, "--index", tmp_path / "ix2", "--model", "fake:", "--backend",
                          "qdrant", "--index-type", "ivf-pq", "--quiet"), "not available with the qdrant backend")


def test_langchain_store_on_qdrant(tmp_path, tiny_encoder):
    pytest.importorskip("langchain_core")
    from llm2vec_rag.integrations.langchain import LLM2VecEmbeddings, LLM2VecVectorStore

    embeddings = LLM2VecEmbeddings(encoder=tiny_encoder, query_instruction="")
    store = LLM2VecVectorStore(embeddings, tmp_path / "store", backend="qdrant")
    try:
        ids = store.add_texts(["cells are the unit of life", "wings generate lift", "rivers carry sediment"],
                              metadatas=[{"topic": "bio"}, {"topic": "air"}, {"topic": "geo"}])
        assert (tmp_path / "store" / "qdrant").is_dir() and not list((tmp_path / "store").glob("vectors-*"))
        assert store.similarity_search("rivers carry sediment", k=1)[0].page_content == "rivers carry sediment"
        assert [d.metadata["topic"] for d in store.similarity_search("lift", k=3, filter={"topic": "air"})] == ["air"]
        store.delete([ids[2]])
        assert len(store.get_by_ids(ids)) == 2
    finally:
        store.close()
    reopened = LLM2VecVectorStore.load(tmp_path / "store", embeddings)
    try:
        assert len(reopened) == 2 and reopened.similarity_search("lift", k=1, filter={"topic": "air"})[0].page_content == "wings generate lift"
    finally:
        reopened.close()


try:
    from langchain_core.vectorstores import VectorStore
    from langchain_tests.integration_tests import VectorStoreIntegrationTests

    from llm2vec_rag.integrations.langchain import LLM2VecVectorStore

    class TestQdrantStoreStandardSuite(VectorStoreIntegrationTests):
        """langchain-tests' VectorStoreIntegrationTests against a Qdrant-backed store."""

        @pytest.fixture()
        def vectorstore(self, tmp_path: Path) -> Generator[VectorStore, None, None]:  # type: ignore[override]
            store = LLM2VecVectorStore(self.get_embeddings(), tmp_path / "store", backend="qdrant")
            try:
                yield store
            finally:
                store.close()
except ImportError:  # pragma: no cover - the langchain extra is not installed
    pass
