"""``--rebuild`` builds beside the live index and swaps it in only when complete (issue 17, item 1).

A bad model, index type or folder changes nothing; an exception or a kill -9 during the rebuild
leaves the old index untouched and searchable; the same ``--rebuild`` again resumes and finishes.
"""
from __future__ import annotations

import json
import signal

import numpy as np
import pytest

from fakes import FakeEncoder, make_fake_encoder
from llm2vec_rag import Index
from llm2vec_rag.index.rebuild import STAGING_DIR
from test_index import write_docs
from test_search_cli import invoke, runner  # noqa: F401  (runner is a fixture)
from test_index_crash import check_consistent, run_index, write_corpus


def snapshot(ix, encoder=None):
    """What a user can see of an index: its chunks and a search."""
    encoder = encoder or FakeEncoder()
    with Index.load(ix, encoder, log=lambda m: None) as index:
        rows = index.meta.conn.execute("SELECT doc_id, text FROM chunks ORDER BY doc_id").fetchall()
        hits = [h.id for h in index.search_by_vector(encoder.encode("bake bread oven"), k=3)]
        return rows, hits, index.info["fingerprint"], index.info["index_uuid"]


@pytest.mark.parametrize("bad", [["--model", "no-such-model"], ["--index-type", "bogus"], ["--index-type", "IVF"],
                                 ["MISSING"], ["EMPTY"], ["--chunk-tokens", "0"], ["--overlap", "-1"],
                                 ["--overlap", "300"]])
def test_bad_rebuild_changes_nothing(runner, tmp_path, bad):
    docs, ix = write_docs(tmp_path / "docs"), tmp_path / "ix"
    assert invoke(runner, "index", docs, "--index", ix, "--model", "fake:", "--quiet").exit_code == 0
    before = snapshot(ix)
    (tmp_path / "empty").mkdir()
    folder = {"MISSING": tmp_path / "nope", "EMPTY": tmp_path / "empty"}.get(bad[0], docs)
    options = [] if bad[0] in ("MISSING", "EMPTY") else bad
    if "--model" not in options:
        options = ["--model", "fake:32", *options]  # a rebuild that would switch models
    result = invoke(runner, "index", folder, "--index", ix, "--rebuild", "--quiet", *options)
    assert result.exit_code == 1, result.output
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), result.stderr
    assert snapshot(ix) == before
    assert not (ix / STAGING_DIR).exists() or bad[0] in ("MISSING", "EMPTY")


def test_old_index_answers_until_the_rebuild_is_complete(tmp_path):
    docs, ix = write_docs(tmp_path / "docs"), tmp_path / "ix"
    Index.build(docs, path=ix, encoder=FakeEncoder(), progress=False, log=lambda m: None).close()
    before = snapshot(ix)
    seen_midway, watching = [], [True]

    class Watching(FakeEncoder):  # looks at the index from outside while the rebuild embeds
        def encode(self, texts, **options):
            if watching[0]:
                seen_midway.append(snapshot(ix) == before)
            return super().encode(texts, **options)

    other = Watching(dim=32, name="fake:32")
    rebuilding = Index.open(ix, other, rebuild=True, log=lambda m: None)
    try:
        rebuilding.add_texts(["an extra text only the new index has"], ids=["extra"])
        assert snapshot(ix) == before  # staged: readers still see the whole old index
        assert [p.name for p in ix.glob("vectors-*.faiss")] == ["vectors-1.faiss"]
        rebuilding.update(docs, progress=False, commit_chunks=2)  # update saves when done: swapped in
        watching[0] = False
        assert len(seen_midway) > 2 and all(seen_midway)
        assert snapshot(ix, make_fake_encoder("fake:32"))[2] != before[2]
        rebuilding.add_texts(["written after the swap"], ids=["after"])  # a normal index from now on
    finally:
        rebuilding.close()
    with Index.load(ix, make_fake_encoder("fake:32")) as index:
        assert index.dim == 32 and index.get_by_ids(["extra"]) and index.get_by_ids(["after"])
        assert index.search("bake bread in the oven", k=1)[0].source.endswith("cooking.txt")
        generation = index.info["faiss_generation"]
        assert generation > 1  # continues after the old generation
    assert [p.name for p in ix.glob("vectors-*.faiss")] == [f"vectors-{generation}.faiss"]
    assert not (ix / STAGING_DIR).exists()


class FailingEncoder(FakeEncoder):
    def __init__(self, fail_after: int) -> None:
        super().__init__(dim=32, name="fake:32")
        self.fail_after = fail_after

    def encode(self, texts, **options):
        if self.calls >= self.fail_after:
            raise RuntimeError("encoder broke")
        return super().encode(texts, **options)


def test_exception_during_rebuild_discards_it(tmp_path):
    docs, ix = tmp_path / "docs", tmp_path / "ix"
    write_corpus(docs, n_files=12)
    Index.build(docs, path=ix, encoder=FakeEncoder(), progress=False, log=lambda m: None).close()
    before = snapshot(ix)
    with pytest.raises(RuntimeError, match="encoder broke"):
        Index.build(docs, path=ix, encoder=FailingEncoder(30), rebuild=True, progress=False, commit_chunks=8,
                    chunk_tokens=16, overlap=0, log=lambda m: None)
    assert snapshot(ix) == before  # Index.build's error path does not swap the half-built index in
    with pytest.raises(RuntimeError, match="encoder broke"):
        with Index.open(ix, FailingEncoder(0), rebuild=True, log=lambda m: None) as index:
            index.add_texts(["x"])
    assert snapshot(ix) == before  # nor does leaving a with-block with an exception


def test_killed_rebuild_leaves_the_old_index_then_resumes(tmp_path):
    docs, ix = tmp_path / "docs", tmp_path / "ix"
    write_corpus(docs)
    assert run_index(docs, ix).returncode == 0
    before = check_consistent(ix)
    old = snapshot(ix)
    killed = run_index(docs, ix, "committed:2", "--rebuild", "--index-type", "hnsw")
    assert killed.returncode == -signal.SIGKILL, killed.stderr
    assert check_consistent(ix) == before and snapshot(ix) == old
    assert (ix / STAGING_DIR).is_dir()
    done = run_index(docs, ix, None, "--rebuild", "--index-type", "hnsw")  # the same rebuild: resumed
    assert done.returncode == 0, done.stderr
    report = json.loads(done.stdout)
    assert 0 < report["added"] < 40 and report["added"] + report["unchanged"] == 40
    assert report["index"]["index_type"] == "hnsw"
    assert len(check_consistent(ix)) == 40 and not (ix / STAGING_DIR).exists()
    assert snapshot(ix)[3] != old[3]  # a new index (new uuid)


@pytest.mark.parametrize("stage", ["swap-moved", "swap-committed"])
def test_kill_during_the_swap(tmp_path, stage):
    docs, ix = tmp_path / "docs", tmp_path / "ix"
    write_corpus(docs, n_files=10)
    assert run_index(docs, ix).returncode == 0
    old = snapshot(ix)
    killed = run_index(docs, ix, stage, "--rebuild", "--index-type", "hnsw")
    assert killed.returncode == -signal.SIGKILL, killed.stderr
    check_consistent(ix)
    now = snapshot(ix)
    assert (now == old) if stage == "swap-moved" else (now[3] != old[3] and now[0] == old[0])
    assert run_index(docs, ix).returncode == 0  # the next writer tidies up
    check_consistent(ix)
    assert len(list(ix.glob("vectors-*.faiss"))) == 1 and not (ix / STAGING_DIR).exists()
    q = np.asarray(FakeEncoder().encode("file 3 version 0 paragraph 2"))
    with Index.load(ix, FakeEncoder()) as index:
        assert any(h.source.endswith("doc003.md") for h in index.search_by_vector(q, k=5))  # HNSW: approximate


def test_qdrant_rebuild_checks_everything_before_dropping(tmp_path):
    pytest.importorskip("qdrant_client")
    from llm2vec_rag.errors import LLM2VecError

    docs, ix = write_docs(tmp_path / "docs"), tmp_path / "ix"
    quiet = dict(progress=False, log=lambda m: None)
    Index.build(docs, path=ix, encoder=FakeEncoder(), backend="qdrant", **quiet).close()
    for folder, bad in ((docs, {"index_type": "bogus"}), (docs, {"index_type": "ivf-pq"}),
                        (tmp_path / "missing", {}), (docs, {"chunk_tokens": 0})):
        with pytest.raises(LLM2VecError):
            Index.build(folder, path=ix, encoder=make_fake_encoder("fake:32"), rebuild=True, backend="qdrant",
                        **bad, **quiet)
    with Index.load(ix, FakeEncoder(), log=lambda m: None) as index:  # the old points are still there
        assert index.info["backend"] == "qdrant"
        hits = index.search_by_vector(FakeEncoder().encode("bake bread in the oven"), k=1)
        assert hits and hits[0].source.endswith("cooking.txt")
