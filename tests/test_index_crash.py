"""kill -9 at every commit stage leaves a loadable, consistent index, and the next run finishes the work.

The indexer runs in a subprocess (the real ``index`` command over the fake encoder, selected through the
test-only factory hook) and SIGKILLs itself at a named point (``LLM2VEC_RAG_TEST_KILL_AT``).
"""
from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

import faiss
import numpy as np
import pytest

from fakes import FACTORY, FakeEncoder
from llm2vec_rag import Index
from llm2vec_rag.index.faults import ENV as KILL_ENV
from llm2vec_rag.index.model import FACTORY_ENV

TESTS = Path(__file__).resolve().parent
RUNNER = "import sys; from llm2vec_rag.cli.index import index; index.main(sys.argv[1:], prog_name='index')"


def run_index(folder: Path, index_dir: Path, kill_at: str | None = None, *extra: str) -> subprocess.CompletedProcess:
    env = {**os.environ, FACTORY_ENV: FACTORY, "PYTHONPATH": f"{TESTS}{os.pathsep}{os.environ.get('PYTHONPATH', '')}"}
    env.pop(KILL_ENV, None)
    if kill_at:
        env[KILL_ENV] = kill_at
    args = [sys.executable, "-c", RUNNER, str(folder), "--index", str(index_dir), "--model", "fake:",
            "--chunk-tokens", "16", "--overlap", "0", "--quiet", "--json", *extra]
    return subprocess.run(args, env=env, capture_output=True, text=True, timeout=120)


def write_corpus(folder: Path, n_files: int = 40, version: int = 0) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    for i in range(n_files):
        paragraphs = [f"File {i} version {version} paragraph {p}: " + " ".join(f"w{i}x{p}y{j}" for j in range(12)) + "."
                      for p in range(8)]
        (folder / f"doc{i:03d}.md").write_text(f"# Doc {i}\n\n" + "\n\n".join(paragraphs) + "\n")


def check_consistent(index_dir: Path) -> dict:
    """FAISS ids == SQLite ids, every file's chunk count matches its rows; returns file -> content hash."""
    with Index.load(index_dir, FakeEncoder(), log=lambda m: None) as index:
        faiss_index = index._faiss_index()
        faiss_ids = set(faiss.vector_to_array(faiss_index.id_map).tolist())
        sqlite_ids = set(index.meta.all_ids().tolist())
        assert faiss_ids == sqlite_ids
        assert faiss_index.ntotal == len(index)
        for path, chunks in index.meta.conn.execute("SELECT path, chunks FROM files"):
            rows = index.meta.conn.execute("SELECT count(*) FROM chunks WHERE file = ?", (path,)).fetchone()[0]
            assert rows == chunks, path
        # the lexical (FTS5) table agrees with the chunk rows, term by term
        index.meta.conn.execute("INSERT INTO chunks_fts(chunks_fts, rank) VALUES ('integrity-check', 1)")
        if len(index):  # searchable
            assert index.search("paragraph", k=3)
            some = index.meta.conn.execute(  # a chunk with a body word (not a heading-only chunk like "# Doc 3")
                "SELECT id, text FROM chunks WHERE text LIKE '%w%x%y%' ORDER BY id LIMIT 1").fetchone()
            word = next(w for w in some[1].replace(".", " ").split() if w.startswith("w"))
            lexical_ids = {h.id for h in index.search(word, k=5, mode="lexical")}
            assert index.meta.conn.execute("SELECT doc_id FROM chunks WHERE id = ?", (some[0],)).fetchone()[0] \
                in lexical_ids
        return dict(index.meta.conn.execute("SELECT path, content_hash FROM files").fetchall())


def test_kill_during_first_build_then_resume(tmp_path):
    docs, ix = tmp_path / "docs", tmp_path / "ix"
    write_corpus(docs)
    killed = run_index(docs, ix, "committed:2")  # after the second batch of files is committed
    assert killed.returncode == -signal.SIGKILL
    partial = check_consistent(ix)
    assert 0 < len(partial) < 40
    done = run_index(docs, ix)
    assert done.returncode == 0, done.stderr
    import json

    report = json.loads(done.stdout)
    assert report["added"] == 40 - len(partial) and report["unchanged"] == len(partial)
    assert len(check_consistent(ix)) == 40


@pytest.mark.parametrize("stage", ["embedded", "committed", "removed", "faiss-tmp", "faiss-renamed", "generation"])
def test_kill_during_update_at_each_stage(tmp_path, stage):
    docs, ix = tmp_path / "docs", tmp_path / "ix"
    write_corpus(docs)
    assert run_index(docs, ix).returncode == 0
    before = check_consistent(ix)
    write_corpus(docs, n_files=30, version=1)  # change 30 files ...
    for i in range(35, 40):  # ... and delete 5
        (docs / f"doc{i:03d}.md").unlink()
    killed = run_index(docs, ix, stage)
    assert killed.returncode == -signal.SIGKILL, killed.stderr
    after = check_consistent(ix)
    for path, digest in after.items():  # every file is wholly old or wholly new
        assert path in before
    if stage == "embedded":
        assert after == before  # nothing committed yet: the previous index, untouched
    leftovers = list(ix.glob("*.tmp"))
    assert stage != "faiss-tmp" or leftovers
    done = run_index(docs, ix)
    assert done.returncode == 0, done.stderr
    final = check_consistent(ix)
    assert len(final) == 35 and not list(ix.glob("*.tmp"))
    assert len(list(ix.glob("vectors-*.faiss"))) == 1
    # the same result as indexing from scratch
    fresh = tmp_path / "fresh"
    assert run_index(docs, fresh).returncode == 0
    with Index.load(ix, FakeEncoder()) as a, Index.load(fresh, FakeEncoder()) as b:
        assert len(a) == len(b)
        q = np.asarray(FakeEncoder().encode("file 3 version 1 paragraph 2"))
        assert [h.id for h in a.search_by_vector(q, k=5)] == [h.id for h in b.search_by_vector(q, k=5)]


def test_second_writer_gets_a_clear_message(tmp_path):
    docs, ix = tmp_path / "docs", tmp_path / "ix"
    write_corpus(docs, n_files=3)
    assert run_index(docs, ix).returncode == 0
    holder = Index.open(ix, FakeEncoder(), log=lambda m: None)
    try:
        env = {**os.environ, FACTORY_ENV: FACTORY, "PYTHONPATH": str(TESTS)}
        code = "from llm2vec_rag.cli.main import main; main()"
        proc = subprocess.run([sys.executable, "-c", code, "index", str(docs), "--index", str(ix), "--quiet"],
                              env=env, capture_output=True, text=True, timeout=120)
    finally:
        holder.close()
    assert proc.returncode == 1
    assert proc.stderr.strip().startswith("error: another llm2vec-rag process")
    assert len(proc.stderr.strip().splitlines()) == 1
