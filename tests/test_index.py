"""The Index API over a deterministic fake encoder: build, search, incremental updates, vector-store methods."""
from __future__ import annotations

import json
import os
import sqlite3
import time

import numpy as np
import pytest

from fakes import FakeEncoder, make_fake_encoder
from llm2vec_rag import Index
from llm2vec_rag.errors import (IndexFormatError, IndexLockedError, IndexModelMismatchError, IndexNotFoundError,
                                LLM2VecError)
from llm2vec_rag.index.records import stable_id

DOCS = {
    "guide/install.md": "# Installation\n\nRun setup.sh to create the virtual environment and install packages.\n",
    "guide/finetune.md": "# Fine-tuning\n\n## MNTP\n\nMasked next token prediction adapts the model to "
                         "bidirectional attention.\n\n## SimCSE\n\nUnsupervised contrastive training with dropout "
                         "noise on your own documents.\n",
    "notes/cooking.txt": "Bake the bread in a hot oven until the crust is golden brown.",
    "notes/rivers.rst": "Rivers\n======\n\nRivers carry sediment from the mountains down to the sea.\n",
    "web/page.html": "<html><head><title>Pooling</title></head><body><h1>Pooling</h1>"
                     "<p>Mean pooling averages the hidden states of the text tokens.</p></body></html>",
}


def write_docs(root, docs=DOCS):
    for rel, text in docs.items():
        path = root / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text, encoding="utf-8")
    return root


@pytest.fixture
def docs(tmp_path):
    return write_docs(tmp_path / "docs")


@pytest.fixture
def encoder():
    return FakeEncoder()


def build(docs, tmp_path, encoder, **options):
    options.setdefault("progress", False)
    options.setdefault("log", lambda m: None)
    return Index.build(docs, path=tmp_path / "ix", encoder=encoder, **options)


def test_build_and_search(docs, tmp_path, encoder):
    with build(docs, tmp_path, encoder) as index:
        report = index.last_report
        assert (report.added, report.updated, report.removed, report.unchanged) == (5, 0, 0, 0)
        assert len(index) == report.total_chunks == report.chunks_added
        hits = index.search("bake bread in the oven", k=3)
        assert hits[0].source.endswith("notes/cooking.txt")
        assert [h.rank for h in hits] == [1, 2, 3]
        assert hits[0].score >= hits[1].score >= hits[2].score
        top = index.search("contrastive training with dropout noise", k=1)[0]
        assert top.heading == "Fine-tuning > SimCSE"
        assert top.text in (docs / "guide/finetune.md").read_text()
        assert (docs / "guide/finetune.md").read_text()[top.start : top.end] == top.text
        assert top.metadata["rel"] == "guide/finetune.md" and top.metadata["content_hash"]
        json.dumps(top.to_dict())  # JSON-serialisable
        html = index.search("mean pooling hidden states", k=1)[0]
        assert html.source.endswith("page.html") and html.metadata["title"] == "Pooling"


def test_incremental_reindex_embeds_only_changes(docs, tmp_path, encoder):
    build(docs, tmp_path, encoder).close()
    first = encoder.calls
    with build(docs, tmp_path, encoder) as index:
        r = index.last_report
        assert (r.added, r.updated, r.removed, r.unchanged, r.chunks_added) == (0, 0, 0, 5, 0)
    assert encoder.calls == first
    # touched but unchanged: read and hashed, not embedded
    os.utime(docs / "notes/cooking.txt", ns=(time.time_ns(), time.time_ns() + 10**9))
    (docs / "notes/rivers.rst").write_text("Rivers\n======\n\nGlaciers carve valleys out of the mountains.\n")
    (docs / "web/page.html").unlink()
    (docs / "new.md").write_text("# New\n\nA brand new page about telescopes and stars.\n")
    with build(docs, tmp_path, encoder) as index:
        r = index.last_report
        assert (r.added, r.updated, r.removed, r.unchanged) == (1, 1, 1, 3)
        assert encoder.calls - first == r.chunks_added == 2
        assert index.search("glaciers carve valleys", k=1)[0].source.endswith("rivers.rst")
        assert not any(h.source.endswith("page.html") for h in index.search("mean pooling", k=10))
        assert len(index) == r.total_chunks
        assert index.search("telescopes and stars", k=1)[0].source.endswith("new.md")


def test_changed_chunk_settings_rechunk_everything(docs, tmp_path, encoder):
    build(docs, tmp_path, encoder).close()
    with build(docs, tmp_path, encoder, chunk_tokens=64) as index:
        assert index.last_report.updated == 5


def test_rebuild_starts_over(docs, tmp_path, encoder):
    build(docs, tmp_path, encoder).close()
    with build(docs, tmp_path, encoder, rebuild=True) as index:
        assert index.last_report.added == 5


def test_add_texts_get_delete_vectors(tmp_path, encoder):
    with Index.create(tmp_path / "ix", encoder, log=lambda m: None) as index:
        ids = index.add_texts(["red apples grow on trees", "blue whales swim in oceans"],
                              metadatas=[{"source": "fruit", "kind": "plant"}, {"source": "sea", "kind": "animal"}],
                              ids=["a", "b"])
        assert ids == ["a", "b"] and len(index) == 2
        auto = index.add_texts(["green frogs jump in ponds"])
        assert len(auto) == 1 and len(auto[0]) == 32
        recs = index.get_by_ids(["b", "missing", "a"])
        assert [r.id for r in recs] == ["b", "a"] and recs[0].metadata["kind"] == "animal"
        vectors = index.get_vectors(["a", "b"])
        assert vectors.shape == (2, encoder.dim)
        np.testing.assert_allclose(np.linalg.norm(vectors, axis=1), 1.0, rtol=1e-5)
        hit = index.search_by_vector(vectors[1], k=1)[0]
        assert hit.id == "b" and hit.score == pytest.approx(1.0, abs=1e-5)
        index.add_texts(["yellow bananas are fruit too"], ids=["a"])  # same id replaces
        assert len(index) == 3 and index.get_by_ids(["a"])[0].text.startswith("yellow")
        assert index.delete(["a", "nope"]) == 1 and len(index) == 2
        assert index.search("yellow bananas", k=3)[0].id != "a"
        with pytest.raises(LLM2VecError, match="no chunk"):
            index.get_vectors(["a"])
    with Index.load(tmp_path / "ix", encoder) as again:  # persisted
        assert len(again) == 2 and again.get_by_ids(["b"])[0].source == "sea"
    assert stable_id("a") == stable_id("a") != stable_id("b") and stable_id("a") >= 0


def test_where_filters(docs, tmp_path, encoder):
    with build(docs, tmp_path, encoder) as index:
        only_md = index.search("rivers sediment pooling bread", k=10, where="*.md")
        assert only_md and all(h.source.endswith(".md") for h in only_md)
        folder = index.search("rivers sediment", k=10, where="notes/")
        assert {os.path.basename(h.source) for h in folder} == {"cooking.txt", "rivers.rst"}
        by_dict = index.search("training", k=10, where={"heading": ["Fine-tuning > MNTP"]})
        assert [h.heading for h in by_dict] == ["Fine-tuning > MNTP"]
        by_meta = index.search("anything at all", k=10, where={"kind": "html"})
        assert len(by_meta) == 1 and by_meta[0].source.endswith("page.html")
        by_fn = index.search("words", k=10, where=lambda m: m.get("kind") == "rst")
        assert [os.path.basename(h.source) for h in by_fn] == ["rivers.rst"]
        assert index.search("words", k=5, where="*.nothing") == []


def test_bad_queries(docs, tmp_path, encoder):
    with build(docs, tmp_path, encoder) as index:
        with pytest.raises(LLM2VecError, match="empty query"):
            index.search("   ")
        with pytest.raises(LLM2VecError, match="k must be at least 1"):
            index.search("x", k=0)
        with pytest.raises(LLM2VecError, match="shape"):
            index.search_by_vector(np.ones(3), k=1)


def test_other_model_is_refused(docs, tmp_path, encoder):
    build(docs, tmp_path, encoder).close()
    with pytest.raises(IndexModelMismatchError, match="was built with model"):
        Index.load(tmp_path / "ix", make_fake_encoder("fake:64:other"))
    with pytest.raises(IndexModelMismatchError, match="dim 64"):
        Index.open(tmp_path / "ix", make_fake_encoder("fake:32"), log=lambda m: None)
    with build(docs, tmp_path, make_fake_encoder("fake:32"), rebuild=True) as index:  # --rebuild switches
        assert index.dim == 32


def test_missing_newer_and_corrupt_indexes(docs, tmp_path, encoder):
    with pytest.raises(IndexNotFoundError, match="no index at"):
        Index.load(tmp_path / "none")
    build(docs, tmp_path, encoder).close()
    meta = tmp_path / "ix" / "meta.sqlite"
    conn = sqlite3.connect(meta)
    conn.execute("PRAGMA user_version=99")
    conn.close()
    with pytest.raises(IndexFormatError, match="newer"):
        Index.load(tmp_path / "ix", encoder)
    for extra in ("meta.sqlite-wal", "meta.sqlite-shm"):
        (tmp_path / "ix" / extra).unlink(missing_ok=True)
    meta.write_bytes(b"this is not a database at all" * 100)
    with pytest.raises(IndexFormatError, match="corrupt"):
        Index.load(tmp_path / "ix", encoder)
    with build(docs, tmp_path, encoder, rebuild=True) as index:  # --rebuild recovers
        assert index.last_report.added == 5


def test_one_writer_at_a_time_readers_welcome(docs, tmp_path, encoder):
    first = build(docs, tmp_path, encoder)
    try:
        with pytest.raises(IndexLockedError, match="another llm2vec-rag process"):
            Index.open(tmp_path / "ix", encoder)
        with Index.load(tmp_path / "ix", encoder) as reader:
            assert reader.search("bread oven", k=1)
    finally:
        first.close()
    Index.open(tmp_path / "ix", encoder).close()  # released


def test_stale_faiss_file_is_rebuilt(docs, tmp_path, encoder):
    build(docs, tmp_path, encoder).close()
    for f in (tmp_path / "ix").glob("vectors-*.faiss"):
        f.unlink()
    notes = []
    with Index.load(tmp_path / "ix", encoder, log=notes.append) as index:
        assert index.search("bake bread", k=1)[0].source.endswith("cooking.txt")
    assert any("rebuilding" in n for n in notes)


def test_index_types_and_switching_without_reembedding(docs, tmp_path, encoder):
    with build(docs, tmp_path, encoder, index_type="hnsw") as index:
        assert index.info["index_type"] == "hnsw"
        assert index.search("bake bread", k=1)[0].source.endswith("cooking.txt")
    (docs / "notes/cooking.txt").unlink()  # HNSW cannot remove: rebuilt from stored vectors
    with build(docs, tmp_path, encoder) as index:
        assert index.last_report.removed == 1
        assert not any(h.source.endswith("cooking.txt") for h in index.search("bake bread", k=10))
    calls = encoder.calls
    notes = []
    with Index.open(tmp_path / "ix", encoder, index_type="sq8", log=notes.append) as index:
        index.save()
        assert index.info["faiss_factory"] == "SQ8"
    assert encoder.calls == calls and any("no re-embedding" in n for n in notes)
    with pytest.raises(LLM2VecError, match="unknown index type"):
        Index.open(tmp_path / "ix", encoder, index_type="NotAType42")


def test_trainable_type_falls_back_to_flat_then_trains(tmp_path, encoder):
    notes = []
    with Index.create(tmp_path / "ix", encoder, index_type="IVF4,Flat", log=notes.append) as index:
        index.add_texts([f"document number {i} about topic {i % 7}" for i in range(100)])
        index.save()
        assert index.info["faiss_factory"] == "Flat"
        assert any("using exact (flat) search" in n for n in notes)
        index.add_texts([f"more text {i} on subject {i % 11}" for i in range(300)])
        index.save()
        assert index.info["faiss_factory"] == "IVF4,Flat"
        assert index.search("document number 5 about topic 5", k=1)[0].text == "document number 5 about topic 5"


def test_bad_files_are_reported_not_fatal(docs, tmp_path, encoder, monkeypatch):
    (docs / "blob.txt").write_bytes(b"\x00\x01binary\x00" * 10)
    (docs / "empty.md").write_text("")
    (docs / "huge.txt").write_text("word " * 300_000)
    (docs / "latin1.txt").write_bytes(b"caf\xe9 au lait with cr\xe8me")
    with build(docs, tmp_path, encoder, max_file_mb=1) as index:
        r = index.last_report
        assert r.added == 6  # the five docs and latin1.txt
        assert r.skipped_reasons["binary"] == 1 and r.skipped_reasons["empty"] == 1
        assert r.skipped_reasons["too_large"] == 1 and r.skipped == 3
        assert any("--max-file-mb" in w for w in r.warnings)
        assert "\ufffd" in index.search("cafe au lait creme", k=1, where="latin1.txt")[0].text


def test_file_vanishing_mid_run_and_kept_chunks(docs, tmp_path, encoder, monkeypatch):
    build(docs, tmp_path, encoder).close()
    (docs / "guide/install.md").write_text("# Installation\n\nChanged text about pip.\n")
    from llm2vec_rag.index import sync

    real = sync.read_regular_file

    def flaky(path):
        if path.name == "install.md":
            raise FileNotFoundError(path)
        return real(path)

    monkeypatch.setattr(sync, "read_regular_file", flaky)
    with build(docs, tmp_path, encoder) as index:
        r = index.last_report
        assert r.skipped_reasons["vanished"] == 1 and r.removed == 1
    monkeypatch.undo()
    # a file that grew past the limit keeps what was indexed, with a warning
    (docs / "notes/cooking.txt").write_text("bread " * 300_000)
    with build(docs, tmp_path, encoder, max_file_mb=1) as index:
        assert index.last_report.skipped_reasons["too_large"] == 1 and index.last_report.removed == 0
        assert index.search("bake bread oven", k=1)[0].source.endswith("cooking.txt")


def test_empty_and_missing_folders_change_nothing(docs, tmp_path, encoder):
    build(docs, tmp_path, encoder).close()
    (tmp_path / "empty").mkdir()
    with pytest.raises(LLM2VecError, match="no files to index"):
        build(tmp_path / "empty", tmp_path, encoder)
    with pytest.raises(LLM2VecError, match="does not exist"):
        build(tmp_path / "missing", tmp_path, encoder)
    with Index.load(tmp_path / "ix", encoder) as index:
        assert index.meta.file_count() == 5


def test_pdf_pages_are_indexed(tmp_path, encoder):
    pytest.importorskip("pypdf")
    from test_ingest import minimal_pdf

    folder = tmp_path / "pdfs"
    folder.mkdir()
    (folder / "paper.pdf").write_bytes(minimal_pdf(["Introduction to quantum tunnelling", "Results on lasers"]))
    with Index.build(folder, path=tmp_path / "ix", encoder=encoder, progress=False, log=lambda m: None) as index:
        hit = index.search("lasers results", k=1)[0]
        assert hit.page == 2 and hit.source.endswith("paper.pdf")


def test_real_tiny_encoder_end_to_end(tiny_encoder, docs, tmp_path):
    """The real LLM2Vec path (tokenizer counting, instruction-aware query encoding), on a tiny random model."""
    with Index.build(docs, path=tmp_path / "ix", encoder=tiny_encoder, progress=False, log=lambda m: None,
                     chunk_tokens=48, overlap=8) as index:
        assert index.info["fingerprint"] == tiny_encoder.fingerprint()
        assert index.info["query_instruction"] == tiny_encoder.query_instruction
        assert len(index.search("bread", k=3)) == 3
        chunk = index.get_by_ids([f"{docs / 'guide/finetune.md'}#0"])[0]
        vec = index.get_vectors([chunk.id])[0]
        assert index.search_by_vector(vec, k=1)[0].id == chunk.id
