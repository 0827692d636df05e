"""What a reader sees while a writer works, and damaged FAISS files (issue 17 items 2, 3)."""
from __future__ import annotations

import time

import numpy as np
import pytest

from fakes import FakeEncoder
from llm2vec_rag import Index
from llm2vec_rag.index.records import stable_id
from test_index import write_docs


def build(docs, ix, **options):
    options.setdefault("progress", False)
    options.setdefault("log", lambda m: None)
    return Index.build(docs, path=ix, encoder=FakeEncoder(), **options)


def consistent(index: Index, hits) -> None:
    """Every hit is a stored row, and its score is the cosine of the stored vector (not a stale one)."""
    for hit in hits:
        stored = index.get_vectors([hit.id])[0]
        assert hit.text and abs(float(stored @ index._probe) - hit.score) < 1e-4, hit


def search(index: Index, text: str, k: int = 50):
    index._probe = FakeEncoder().encode(text)
    hits = index.search_by_vector(index._probe, k=k)
    consistent(index, hits)
    return hits


def test_reader_sees_each_committed_state_of_a_running_writer(tmp_path):
    docs, ix = write_docs(tmp_path / "docs"), tmp_path / "ix"
    build(docs, ix).close()
    notes: list[str] = []
    reader = Index.load(ix, FakeEncoder(), log=notes.append)
    before = search(reader, "bake bread oven")
    assert before[0].source.endswith("cooking.txt") and len(before) == len(reader)
    writer = Index.open(ix, FakeEncoder(), log=lambda m: None)
    try:
        writer.add_texts(["zebra giraffe savanna"], ids=["zebra"])  # committed; FAISS file not written yet
        cooking = [h.id for h in before if h.source.endswith("cooking.txt")]
        writer.delete(cooking)
        hits = search(reader, "zebra giraffe savanna")
        assert hits[0].id == "zebra" and hits[0].score > 0.999
        assert len(hits) == len(reader)  # complete: every committed chunk, none missing
        assert not any(h.id in cooking for h in search(reader, "bake bread oven"))
        writer.add_texts(["penguin iceberg"], ids=["penguin"])
        assert search(reader, "penguin iceberg")[0].id == "penguin"
    finally:
        writer.close()  # the new FAISS generation
    assert not any("interrupted run?" in n for n in notes) and len(notes) <= 1  # at most one accurate note
    said = len(notes)
    hits = search(reader, "penguin iceberg")
    assert hits[0].id == "penguin" and len(notes) == said  # the new file itself, no rebuild
    reader.close()


class WriterMidSearch(FakeEncoder):
    """A reader's encoder that lets ``write`` run once, after the reader's snapshot is taken."""

    def __init__(self, write) -> None:
        super().__init__()
        self.write = write

    def encode_queries(self, queries, **options):
        if self.write is not None:
            write, self.write = self.write, None
            write()
        return super().encode_queries(queries, **options)


@pytest.mark.parametrize("rebuild", [False, True])
def test_reader_whose_faiss_file_was_replaced_mid_search(tmp_path, rebuild):
    docs, ix = write_docs(tmp_path / "docs"), tmp_path / "ix"
    build(docs, ix).close()

    def write():  # a writer commits a new generation and removes the one the reader's snapshot names
        start = time.perf_counter()
        with Index.open(ix, FakeEncoder(), rebuild=rebuild, log=lambda m: None) as writer:
            if rebuild:
                writer.update(docs, progress=False)  # swapped in (rebuild.swap_in)
            writer.add_texts(["zebra giraffe savanna"], ids=["zebra"])  # saved on close (FaissBackend.save)
        assert time.perf_counter() - start < 20  # the swap does not wait for the reader's search (it waited 30 s)

    notes: list[str] = []
    with Index.load(ix, WriterMidSearch(write), log=notes.append) as reader:
        hits = reader.search("zebra giraffe savanna", k=3, mode="dense")
        reader._probe = FakeEncoder().encode("zebra giraffe savanna")
        consistent(reader, hits)
        assert hits[0].id == "zebra" and hits[0].score > 0.999  # the writer's committed state, in full
    assert not notes, notes  # no false "missing" note, no copy rebuilt in memory


def test_reader_of_a_deleted_faiss_file_says_so_once(tmp_path):
    docs, ix = write_docs(tmp_path / "docs"), tmp_path / "ix"
    build(docs, ix).close()
    for path in ix.glob("vectors-*.faiss"):
        path.unlink()  # not a writer's doing: searching again finds it gone too
    notes: list[str] = []
    with Index.load(ix, FakeEncoder(), log=notes.append) as reader:
        assert search(reader, "bake bread oven")[0].source.endswith("cooking.txt")
        assert search(reader, "rivers sediment")[0].source.endswith("rivers.rst")
    assert len(notes) == 1 and "is missing" in notes[0], notes


def test_flipped_bytes_in_the_faiss_file_are_caught_and_repaired(tmp_path):
    docs, ix = write_docs(tmp_path / "docs"), tmp_path / "ix"
    build(docs, ix).close()
    (path,) = ix.glob("vectors-*.faiss")
    data = bytearray(path.read_bytes())
    for offset in range(len(data) - 400, len(data) - 100, 7):  # inside the stored vectors
        data[offset] ^= 0x5A
    path.write_bytes(bytes(data))
    notes: list[str] = []
    with Index.load(ix, FakeEncoder(), log=notes.append) as reader:
        hits = search(reader, "bake bread oven")
        assert hits[0].source.endswith("cooking.txt") and hits[0].score <= 1.0001
    assert any("checksum" in n for n in notes)
    # a writer run with nothing to change repairs the file on disk
    with build(docs, ix) as index:
        assert index.last_report.unchanged == 5
    notes.clear()
    with Index.load(ix, FakeEncoder(), log=notes.append) as reader:
        assert search(reader, "bake bread oven")[0].source.endswith("cooking.txt")
    assert not notes


def test_stable_ids_are_what_faiss_holds(tmp_path):
    docs, ix = write_docs(tmp_path / "docs"), tmp_path / "ix"
    with build(docs, ix) as index:
        index.add_texts(["x"], ids=["custom"])
        ids = set(np.asarray(index.meta.all_ids()).tolist())
        assert stable_id("custom") in ids
