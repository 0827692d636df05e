"""``llm2vec-rag check [--repair]`` finds real damage and repairs it from SQLite (issue 17, "Also build")."""
from __future__ import annotations

import json
import sqlite3

import pytest

from test_index import write_docs
from test_search_cli import invoke, runner  # noqa: F401  (runner is a fixture)


@pytest.fixture
def indexed(runner, tmp_path):
    docs, ix = write_docs(tmp_path / "docs"), tmp_path / "ix"
    assert invoke(runner, "index", docs, "--index", ix, "--model", "fake:", "--quiet").exit_code == 0
    return docs, ix


def check(runner, ix, *extra):
    result = invoke(runner, "check", "--index", ix, "--json", "--quiet", *extra)
    return result.exit_code, json.loads(result.stdout)


def sql(ix, *statements):
    conn = sqlite3.connect(ix / "meta.sqlite")
    for statement in statements:
        conn.execute(statement)
    conn.commit()
    conn.close()


def test_healthy_index_is_ok(runner, indexed):
    _, ix = indexed
    code, report = check(runner, ix)
    assert code == 0 and report["ok"] and report["chunks"] > 0 and report["problems"] == []
    human = invoke(runner, "check", "--index", ix)
    assert human.exit_code == 0 and ": ok (" in human.stdout


def test_damaged_faiss_file_is_found_and_rebuilt(runner, indexed):
    _, ix = indexed
    (path,) = ix.glob("vectors-*.faiss")
    data = bytearray(path.read_bytes())
    data[-200] ^= 0xFF
    path.write_bytes(bytes(data))
    code, report = check(runner, ix)
    assert code == 1 and report["kinds"] == ["faiss"] and "checksum" in report["problems"][0]
    code, report = check(runner, ix, "--repair")
    assert code == 0 and report["ok"] and any("FAISS" in r for r in report["repaired"])
    assert check(runner, ix)[0] == 0


def test_chunk_rows_out_of_step_are_dropped_then_reindexed(runner, indexed):
    docs, ix = indexed
    sql(ix, "DELETE FROM chunks WHERE id = (SELECT min(id) FROM chunks)")  # a row lost behind the index's back
    code, report = check(runner, ix)
    assert code == 1 and {"chunks", "faiss"} <= set(report["kinds"])
    code, report = check(runner, ix, "--repair")
    assert code == 0, report
    assert any("dropped 1 file" in r for r in report["repaired"])
    again = invoke(runner, "index", docs, "--index", ix, "--quiet", "--json")
    assert json.loads(again.stdout)["added"] == 1
    assert check(runner, ix)[0] == 0


def test_lexical_table_out_of_step_is_rebuilt(runner, indexed):
    _, ix = indexed
    sql(ix, "INSERT INTO chunks_fts(chunks_fts) VALUES ('delete-all')")
    code, report = check(runner, ix)
    assert code == 1 and report["kinds"] == ["lexical"]
    code, report = check(runner, ix, "--repair")
    assert code == 0 and any("lexical" in r for r in report["repaired"])
    result = invoke(runner, "search", "bread oven", "--index", ix, "--mode", "lexical", "--json")
    assert result.exit_code == 0 and "cooking.txt" in result.stdout


def test_leftovers_are_reported_and_removed(runner, indexed):
    _, ix = indexed
    (ix / "vectors-99.faiss.tmp").write_bytes(b"half a file")
    (ix / "rebuild-staging").mkdir()
    code, report = check(runner, ix)
    assert code == 1 and report["kinds"] == ["leftovers"]
    code, report = check(runner, ix, "--repair")
    assert code == 0 and not (ix / "vectors-99.faiss.tmp").exists() and not (ix / "rebuild-staging").exists()


def test_damaged_database_is_reported_not_repaired(runner, tmp_path):
    docs = tmp_path / "docs"
    docs.mkdir()
    for i in range(30):
        (docs / f"d{i}.md").write_text("\n\n".join(f"Doc {i} paragraph {p} " + "word " * 40 for p in range(12)))
    ix = tmp_path / "ix"
    assert invoke(runner, "index", docs, "--index", ix, "--model", "fake:", "--quiet").exit_code == 0
    meta = ix / "meta.sqlite"
    size = meta.stat().st_size
    with open(meta, "r+b") as fh:
        for page in range(size // 4096 // 3, size // 4096 * 2 // 3, 3):
            fh.seek(page * 4096)
            fh.write(b"\xde\xad" * 2048)
    result = invoke(runner, "check", "--index", ix, "--repair")
    assert result.exit_code == 1 and "not repairable here" in result.stdout and "Traceback" not in result.output
