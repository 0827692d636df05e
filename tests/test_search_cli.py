"""``llm2vec-rag index`` / ``search`` end to end through click, over the fake encoder (test hook ``--model fake:``)."""
from __future__ import annotations

import json
import os

import pytest
from click.testing import CliRunner

from fakes import FACTORY
from llm2vec_rag.cli.main import cli
from llm2vec_rag.index.model import FACTORY_ENV
from test_index import write_docs


@pytest.fixture
def runner(monkeypatch):
    monkeypatch.setenv(FACTORY_ENV, FACTORY)
    return CliRunner()


@pytest.fixture
def docs(tmp_path):
    return write_docs(tmp_path / "docs")


def invoke(runner, *args):
    return runner.invoke(cli, [str(a) for a in args], catch_exceptions=False)


def one_line_error(result, *fragments):
    """The command failed with exit 1 and exactly one ``error: ...`` line holding every fragment; returns it."""
    assert result.exit_code == 1, result.output
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), result.stderr
    for fragment in fragments:
        assert fragment in lines[0], lines[0]
    return lines[0]


def test_index_then_search_from_the_same_place(runner, docs, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    first = invoke(runner, "index", "docs", "--model", "fake:", "--quiet")
    assert first.exit_code == 0 and "added 5, updated 0, removed 0, unchanged 0" in first.stdout
    assert (tmp_path / ".llm2vec-rag" / "meta.sqlite").is_file()
    again = invoke(runner, "index", "docs", "--quiet")  # no --model: the recorded one
    assert "added 0, updated 0, removed 0, unchanged 5, skipped 0" in again.stdout
    result = invoke(runner, "search", "bake bread in a hot oven", "--json", "--k", "3")
    assert result.exit_code == 0
    rows = [json.loads(line) for line in result.stdout.splitlines()]
    assert [r["rank"] for r in rows] == [1, 2, 3]
    assert rows[0]["source"].endswith("notes/cooking.txt")
    for key in ("rank", "score", "source", "chunk", "text", "heading", "page", "start", "end", "id"):
        assert key in rows[0]
    assert rows[0]["score"] >= rows[1]["score"]


def test_human_output_and_where(runner, docs, tmp_path):
    ix = tmp_path / "ix"
    invoke(runner, "index", docs, "--index", ix, "--model", "fake:", "--quiet")
    result = invoke(runner, "search", "contrastive dropout training", "--index", ix, "--k", "2")
    lines = result.stdout.splitlines()
    assert lines[0].startswith(" 1. ") and "finetune.md" in lines[0] and "§ Fine-tuning > SimCSE" in lines[0]
    assert "dropout" in lines[1]
    where = invoke(runner, "search", "rivers sediment bread", "--index", ix, "--where", "*.rst", "--json")
    assert [json.loads(x)["source"].endswith(".rst") for x in where.stdout.splitlines()] == [True]
    none = invoke(runner, "search", "rivers", "--index", ix, "--where", "*.pdf")
    assert none.exit_code == 0 and none.stdout == "" and "no results" in none.stderr


def test_index_json_summary_and_progress_on_stderr(runner, docs, tmp_path):
    result = invoke(runner, "index", docs, "--index", tmp_path / "ix", "--model", "fake:", "--json")
    summary = json.loads(result.stdout)
    assert summary["added"] == 5 and summary["index"]["chunks"] == summary["total_chunks"] > 0
    assert summary["index"]["model"] == "fake:"
    assert "Indexing" in result.stderr  # the progress bar, on stderr only


def test_bad_input_gets_one_line_errors(runner, docs, tmp_path):
    ix = tmp_path / "ix"
    one_line_error(invoke(runner, "search", "anything", "--index", ix), "no index at")
    one_line_error(invoke(runner, "index", tmp_path / "missing", "--index", ix, "--model", "fake:"), "does not exist")
    (tmp_path / "empty").mkdir()
    one_line_error(invoke(runner, "index", tmp_path / "empty", "--index", ix, "--model", "fake:"), "no files to index")
    built = json.loads(invoke(runner, "index", docs, "--index", ix, "--model", "fake:", "--quiet", "--json").stdout)
    one_line_error(invoke(runner, "search", "  ", "--index", ix), "empty query")
    one_line_error(invoke(runner, "search", "x", "--index", ix, "--k", "0"), "--k must be at least 1")
    one_line_error(invoke(runner, "index", docs, "--index", ix, "--model", "fake:64:other"), "--rebuild")
    one_line_error(invoke(runner, "index", docs, "--index", ix, "--overlap", "300"), "--overlap")
    one_line_error(invoke(runner, "index", docs, "--index", ix, "--index-type", "bogus"), "unknown index type")
    ok = invoke(runner, "search", "bread", "--index", ix, "--json", "--k", "100")  # nothing above lost anything
    assert ok.exit_code == 0 and len(ok.stdout.splitlines()) == built["total_chunks"]
    switched = invoke(runner, "index", docs, "--index", ix, "--model", "fake:64:other", "--rebuild", "--quiet")
    assert switched.exit_code == 0 and "added 5" in switched.stdout


def test_corrupt_index_is_a_clear_error(runner, docs, tmp_path):
    ix = tmp_path / "ix"
    invoke(runner, "index", docs, "--index", ix, "--model", "fake:", "--quiet")
    for extra in ("meta.sqlite-wal", "meta.sqlite-shm"):
        (ix / extra).unlink(missing_ok=True)
    (ix / "meta.sqlite").write_bytes(os.urandom(4096))
    one_line_error(invoke(runner, "search", "bread", "--index", ix), "corrupt")


def test_search_uses_recorded_instruction_and_override(runner, docs, tmp_path, monkeypatch):
    import fakes

    seen = []
    original = fakes.FakeEncoder.encode_queries

    def spy(self, queries, instruction=None, **options):
        seen.append(instruction)
        return original(self, queries, instruction=instruction, **options)

    monkeypatch.setattr(fakes.FakeEncoder, "encode_queries", spy)
    ix = tmp_path / "ix"
    invoke(runner, "index", docs, "--index", ix, "--model", "fake:", "--quiet", "--instruction", "Find docs:")
    invoke(runner, "search", "bread", "--index", ix)
    invoke(runner, "search", "bread", "--index", ix, "--instruction", "Other:")
    assert seen == ["Find docs:", "Other:"]


def test_unchanged_run_does_not_load_the_model(runner, docs, tmp_path, monkeypatch):
    import fakes

    loads = []
    original = fakes.make_fake_encoder
    monkeypatch.setattr(fakes, "make_fake_encoder", lambda spec: loads.append(spec) or original(spec))
    ix = tmp_path / "ix"
    invoke(runner, "index", docs, "--index", ix, "--model", "fake:", "--quiet")
    assert loads == ["fake:"]
    again = invoke(runner, "index", docs, "--index", ix, "--quiet")
    assert "unchanged 5" in again.stdout and loads == ["fake:"]
    (docs / "new.txt").write_text("fresh words")
    invoke(runner, "index", docs, "--index", ix, "--quiet")
    assert loads == ["fake:", "fake:"]  # the recorded model, loaded once there was work


def test_chunk_settings_are_remembered(runner, docs, tmp_path):
    ix = tmp_path / "ix"
    invoke(runner, "index", docs, "--index", ix, "--model", "fake:", "--quiet", "--chunk-tokens", "64")
    again = invoke(runner, "index", docs, "--index", ix, "--quiet")
    assert "unchanged 5" in again.stdout
    changed = invoke(runner, "index", docs, "--index", ix, "--quiet", "--chunk-tokens", "128")
    assert "updated 5" in changed.stdout


def test_commit_chunks_sets_the_commit_group(runner, docs, tmp_path):
    """--commit-chunks 1 commits file by file (each commit bumps rows_version); the default groups them."""
    import sqlite3

    versions = {}
    for size in ("1", None):
        ix = tmp_path / f"ix-{size}"
        extra = ["--commit-chunks", size] if size else []
        result = invoke(runner, "index", docs, "--index", ix, "--model", "fake:", "--quiet", "--json", *extra)
        assert result.exit_code == 0, result.output
        assert json.loads(result.stdout)["added"] == 5
        with sqlite3.connect(ix / "meta.sqlite") as conn:
            versions[size] = json.loads(conn.execute("SELECT value FROM info WHERE key='rows_version'").fetchone()[0])
    assert versions["1"] == 5 and versions[None] == 1
