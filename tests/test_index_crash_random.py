"""A seeded handful of kill -9 moments during build, update, deletion and rebuild, each followed by ``check``.

The seed is fixed (``LLM2VEC_RAG_CRASH_SEED`` picks another); each kill must leave an index whose
data ``check`` finds intact (only "FAISS behind" and leftovers, which the next writer repairs, may
show), ``check --repair`` must make it clean, and the finished run must equal a fresh build.
"""
from __future__ import annotations

import json
import os
import random
import signal

from fakes import FakeEncoder
from llm2vec_rag import Index
from llm2vec_rag.index.check import check_index
from test_index_crash import check_consistent, run_index, write_corpus

SEED = int(os.environ.get("LLM2VEC_RAG_CRASH_SEED", "17"))
ALLOWED_AFTER_KILL = {"faiss", "leftovers"}  # what a kill may leave; the next writer (or --repair) fixes both


def after_kill(ix) -> None:
    report = check_index(ix)
    assert set(report.to_dict()["kinds"]) <= ALLOWED_AFTER_KILL, report.to_dict()
    for finding in report.findings:
        assert "missing" not in finding.message or "FAISS file" in finding.message
    check_consistent(ix)  # loadable and searchable as it is


def test_random_kills_then_check(tmp_path):
    rng = random.Random(SEED)
    docs, ix = tmp_path / "docs", tmp_path / "ix"
    write_corpus(docs, n_files=12)
    plan = [
        ("build", f"committed:{rng.randint(1, 3)}", ()),
        ("update", rng.choice(["embedded", "committed", "faiss-tmp", "faiss-renamed", "generation"]), ()),
        ("delete", rng.choice(["removed", "faiss-tmp", "generation"]), ()),
        ("rebuild", rng.choice([f"committed:{rng.randint(1, 3)}", "swap-moved", "swap-committed"]),
         ("--rebuild", "--index-type", rng.choice(["flat", "hnsw"]))),
    ]
    version = 0
    for step, stage, extra in plan:
        if step == "update":
            version += 1
            write_corpus(docs, n_files=rng.randint(4, 10), version=version)
        elif step == "delete":
            for i in rng.sample(range(12), 3):
                (docs / f"doc{i:03d}.md").unlink(missing_ok=True)
        killed = run_index(docs, ix, stage, *extra)
        assert killed.returncode in (-signal.SIGKILL, 0), (step, stage, killed.stderr)
        if (ix / "meta.sqlite").exists():
            after_kill(ix)
        if rng.random() < 0.5:  # sometimes repair with check, sometimes let the next run do it
            assert check_index(ix, repair=True).ok if (ix / "meta.sqlite").exists() else True
        done = run_index(docs, ix, None, *extra)
        assert done.returncode == 0, (step, stage, done.stderr)
        assert check_index(ix).ok, check_index(ix).to_dict()
    fresh = tmp_path / "fresh"
    assert run_index(docs, fresh).returncode == 0
    with Index.load(ix, FakeEncoder()) as a, Index.load(fresh, FakeEncoder()) as b:
        assert sorted(r[0] for r in a.meta.conn.execute("SELECT doc_id FROM chunks")) == \
            sorted(r[0] for r in b.meta.conn.execute("SELECT doc_id FROM chunks"))
    assert json.loads(run_index(docs, ix).stdout)["added"] == 0
