"""Hybrid search: the FTS5 lexical table, safe query handling, fusion, and every mode through API, CLI and eval."""
from __future__ import annotations

import json
import sqlite3
import subprocess

import numpy as np
import pytest
from click.testing import CliRunner

from fakes import FACTORY, FakeEncoder
from llm2vec_rag import Index
from llm2vec_rag.errors import LLM2VecError
from llm2vec_rag.index import hybrid, lexical
from llm2vec_rag.index.hybrid import SearchSettings, fuse
from llm2vec_rag.index.meta import FORMAT_VERSION, META_FILE
from llm2vec_rag.index.model import FACTORY_ENV
from test_index_faults import tmpfs  # noqa: F401  (a fixture: a real tmpfs, remounted read-only here)

TEXTS = {
    "cells": "Cells are the basic structural unit of every living organism.",
    "mito": "The mitochondrion produces most of the chemical energy of a cell.",
    "wings": "Aircraft wings are shaped so that moving air generates lift.",
    "zebra": "Quagga and zebra stripes confuse biting flies, field studies suggest.",
    "rivers": "Rivers carry sediment from mountains down to the sea.",
}


@pytest.fixture(name="index")
def hybrid_index(tmp_path):
    ix = Index.create(tmp_path / "ix", FakeEncoder(), log=lambda m: None)
    ix.add_texts(list(TEXTS.values()), ids=list(TEXTS), metadatas=[{"source": f"/docs/{k}-notes.md", "topic": k}
                                                                    for k in TEXTS])
    yield ix
    ix.close()


# ---------------------------------------------------------------- query analysis and escaping
def test_query_terms_fold_case_drop_stop_words_and_dedupe():
    assert lexical.query_terms("How do the Cells of THE cell work?") == ["cells", "cell", "work"]
    assert lexical.query_terms("the of and") == []
    assert lexical.match_expression("zebra stripes") == '"zebra" OR "stripes"'


HOSTILE = ['"unbalanced', 'zebra*', 'NEAR(zebra stripes)', 'text:zebra', '-zebra', '(zebra', 'zebra AND NOT flies',
           'OR', "'; DROP TABLE chunks; --", '^zebra', 'zebra + stripes', '{text heading}: zebra', '\\"\\', '**',
           'zebra"OR"stripes', '\udcff\udcfezebra', '斑马 条纹', 'حمار وحشي', 'x' * 100_000 + ' zebra']


@pytest.mark.parametrize("query", HOSTILE)
def test_fts5_syntax_in_a_query_is_text_never_an_error(index, query):
    hits = index.search(query, k=3, mode="lexical")  # no exception, ever
    if "zebra" in query and "'" not in query:
        assert hits and hits[0].id == "zebra", query
    assert len(index) == len(TEXTS)  # nothing was dropped
    index.meta.conn.execute("INSERT INTO chunks_fts(chunks_fts, rank) VALUES ('integrity-check', 1)")


def test_huge_query_is_capped_and_fast(index):
    words = " ".join(f"word{i}" for i in range(20_000)) + " zebra"
    assert len(lexical.query_terms(words)) == lexical.MAX_QUERY_TERMS
    assert index.search("zebra " + words, k=1, mode="lexical")[0].id == "zebra"


def test_stop_words_only_query(index):
    assert index.search("what is the", k=3, mode="lexical") == []
    hybrid_hits = index.search("what is the", k=3)  # hybrid falls back to the dense side
    assert len(hybrid_hits) == 3 and all(h.lexical_score is None for h in hybrid_hits)


# ---------------------------------------------------------------- fusion
def test_convex_fusion_normalises_and_weights():
    dense = [(1, 0.9), (2, 0.5), (3, 0.1)]
    lex = [(3, 12.0), (4, 6.0), (1, 2.0)]
    out = fuse(dense, lex, SearchSettings.of("hybrid", alpha=0.5), 10)
    scores = {f.id: f.score for f in out}
    assert scores[1] == pytest.approx(0.5 * 1.0 + 0.5 * 0.0)
    assert scores[3] == pytest.approx(0.5 * 0.0 + 0.5 * 1.0)
    assert scores[2] == pytest.approx(0.5 * 0.5)
    assert scores[4] == pytest.approx(0.5 * 0.4)
    assert [f.id for f in fuse(dense, lex, SearchSettings.of("hybrid", alpha=1.0), 3)] == [1, 2, 3]
    assert [f.id for f in fuse(dense, lex, SearchSettings.of("hybrid", alpha=0.0), 3)] == [3, 4, 1]
    top = out[0]
    assert (top.dense, top.lexical) in {(0.9, 2.0), (0.1, 12.0)}


def test_rrf_fusion_uses_ranks():
    dense = [(1, 0.9), (2, 0.8)]
    lex = [(2, 50.0), (3, 1.0)]
    out = fuse(dense, lex, SearchSettings.of("hybrid", fusion="rrf"), 10)
    k = hybrid.RRF_K
    assert out[0].id == 2 and out[0].score == pytest.approx(0.5 / (k + 2) + 0.5 / (k + 1))
    assert {f.id for f in out} == {1, 2, 3}


@pytest.mark.parametrize("bad", [{"mode": "bm25"}, {"fusion": "max"}, {"alpha": 1.5}, {"alpha": -0.1}])
def test_bad_settings_are_one_line_errors(index, bad):
    with pytest.raises(LLM2VecError) as err:
        index.search("zebra", **bad)
    assert "\n" not in str(err.value)


# ---------------------------------------------------------------- the Index API
def test_modes_through_the_python_api(index):
    lex = index.search("quagga stripes", k=2, mode="lexical")
    assert lex[0].id == "zebra" and lex[0].mode == "lexical" and lex[0].lexical_score == lex[0].score > 0
    assert lex[0].dense_score is None
    dense = index.search("quagga stripes", k=5, mode="dense")
    by_vector = index.search_by_vector(FakeEncoder().encode_queries(["quagga stripes"]), k=5)
    assert [h.id for h in dense] == [h.id for h in by_vector]
    assert all(h.dense_score == h.score for h in dense)
    hyb = index.search("quagga stripes", k=5)
    assert hyb[0].mode == "hybrid" and hyb[0].id == "zebra"
    assert hyb[0].dense_score is not None and hyb[0].lexical_score is not None
    assert [h.rank for h in hyb] == list(range(1, len(hyb) + 1))
    assert all(a.score >= b.score for a, b in zip(hyb, hyb[1:]))


def test_file_name_is_searchable(index):
    assert index.search("rivers notes", k=1, mode="lexical")[0].id == "rivers"


def test_a_heading_match_outweighs_the_same_match_in_the_text():
    """The heading column weighs 3 (chosen on SciFact train): of two rows alike but for where the term is,
    the one with it in its heading ranks first; with equal weights they tie and the lower row id comes first."""
    conn = sqlite3.connect(":memory:")
    conn.execute("CREATE TABLE chunks (id INTEGER PRIMARY KEY, text TEXT NOT NULL, heading TEXT NOT NULL DEFAULT '',"
                 " source TEXT NOT NULL DEFAULT '')")
    conn.executescript(lexical.schema())
    conn.executemany("INSERT INTO chunks(id, text, heading) VALUES (?, ?, ?)",
                     [(1, "okapi forest animal", "zoo"), (2, "zoo forest animal", "okapi"), (3, "rivers", "sea")])
    assert lexical.COLUMN_WEIGHTS == (1.0, 3.0, 1.0)
    assert [i for i, _ in lexical.search(conn, "okapi", 5)] == [2, 1]
    assert [i for i, _ in lexical.search(conn, "okapi", 5, weights=(1.0, 1.0, 1.0))] == [1, 2]
    with pytest.raises(ValueError, match="3 column weights"):
        lexical.search(conn, "okapi", 5, weights=(1.0, 1.0))


def test_where_filters_both_sides(index):
    for mode in ("lexical", "dense", "hybrid"):
        hits = index.search("zebra cells energy", k=5, mode=mode, where={"topic": ["cells", "mito"]})
        assert hits and {h.id for h in hits} <= {"cells", "mito"}, mode
        assert [h.id for h in index.search("zebra aircraft", k=5, mode=mode, where="*wings-notes.md")] == ["wings"]


def test_lexical_table_follows_deletes_and_replacements(index):
    assert index.search("quagga", k=1, mode="lexical")[0].id == "zebra"
    index.delete(["zebra"])
    assert index.search("quagga", k=3, mode="lexical") == []
    index.add_texts(["Okapi live in the rainforest."], ids=["wings"])  # replaces the wings chunk
    assert index.search("aircraft", k=3, mode="lexical") == []
    assert index.search("okapi", k=1, mode="lexical")[0].id == "wings"
    index.meta.conn.execute("INSERT INTO chunks_fts(chunks_fts, rank) VALUES ('integrity-check', 1)")


def test_lexical_search_loads_no_model(tmp_path, index):
    index.close()
    reopened = Index.load(index.path, log=lambda m: None)  # the recorded model is "fake": cannot load here
    try:
        assert reopened.search("quagga", k=1, mode="lexical")[0].id == "zebra"
        assert reopened._encoder is None
    finally:
        reopened.close()


def test_add_embeddings_stores_given_vectors(tmp_path):
    with Index.create(tmp_path / "e", FakeEncoder(dim=8), log=lambda m: None) as ix:
        vectors = np.eye(8, dtype=np.float32)[:2] * 3
        ix.add_embeddings(["alpha text", "beta text"], vectors, ids=["a", "b"])
        np.testing.assert_allclose(ix.get_vectors(["a", "b"]), np.eye(8)[:2], atol=1e-6)
        assert ix.search("beta", k=1, mode="lexical")[0].id == "b"
        with pytest.raises(LLM2VecError, match="8-d"):
            ix.add_embeddings(["x"], np.ones((1, 4)))


# ---------------------------------------------------------------- migration of an index made before this change
def _make_old_index(path):
    """Turn a fresh index into the format-1 layout: no lexical table, user_version 1, info.format 1."""
    conn = sqlite3.connect(path / META_FILE)
    for kind, name in conn.execute("SELECT type, name FROM sqlite_master WHERE name LIKE 'chunks_fts%'").fetchall():
        if kind in ("trigger", "view") or name == "chunks_fts":
            conn.execute(f"DROP {kind.upper() if kind != 'table' else 'TABLE'} IF EXISTS {name}")
    conn.execute("UPDATE info SET value = '1' WHERE key = 'format'")
    conn.execute("PRAGMA user_version=1")
    conn.commit()
    assert not lexical.has_table(conn)
    conn.close()


def test_old_index_is_migrated_without_re_embedding(tmp_path, index):
    path = index.path
    index.close()
    _make_old_index(path)
    encoder = FakeEncoder()
    with Index.load(path, encoder, log=lambda m: None) as ix:
        assert encoder.calls == 0
        assert ix.meta.conn.execute("PRAGMA user_version").fetchone()[0] == FORMAT_VERSION
        assert ix.info["format"] == FORMAT_VERSION
        assert ix.search("quagga", k=1, mode="lexical")[0].id == "zebra"
        assert ix.search("quagga", k=1)[0].id == "zebra"
        assert encoder.calls == 1  # only the query


def _write_docs(folder):
    """TEXTS as one Markdown file each, titled by its key."""
    folder.mkdir()
    for key, text in TEXTS.items():
        (folder / f"{key}.md").write_text(f"# {key.title()}\n\n{text}\n")
    return folder


def test_old_read_only_index_says_why_hybrid_is_dense_only(tmp_path, tmpfs, monkeypatch):
    """An old index that cannot be upgraded (read-only) searches dense only and says so, once per opening."""
    monkeypatch.setenv(FACTORY_ENV, FACTORY)
    from llm2vec_rag.cli.main import cli

    docs = _write_docs(tmp_path / "docs")
    runner = CliRunner()
    ix = tmpfs / "ix"
    assert runner.invoke(cli, ["index", str(docs), "--index", str(ix), "--model", "fake:", "--quiet"]).exit_code == 0
    _make_old_index(ix)
    assert subprocess.run(["mount", "-o", "remount,ro", str(tmpfs)], capture_output=True).returncode == 0
    res = runner.invoke(cli, ["search", "quagga zebra stripes", "--index", str(ix), "--json", "-k", "2"])
    assert res.exit_code == 0, res.output
    assert [json.loads(line)["mode"] for line in res.stdout.splitlines()] == ["dense", "dense"]
    note = res.stderr.strip().splitlines()
    assert len(note) == 1 and note[0].startswith("note: ") and "read-only" in note[0] and "lexical" in note[0], note
    messages: list[str] = []
    with Index.load(ix, log=messages.append) as old:
        assert old.search("zebra", k=1)[0].mode == "dense"
        assert old.search("zebra", k=1, mode="hybrid")[0].mode == "dense"
        assert old.search("zebra", k=1, mode="dense")[0].mode == "dense"
        with pytest.raises(LLM2VecError, match="no lexical table"):
            old.search("zebra", k=1, mode="lexical")
    assert len(messages) == 1 and "dense side only" in messages[0], messages


# ---------------------------------------------------------------- CLI and eval
@pytest.fixture()
def cli_env(monkeypatch, tmp_path):
    monkeypatch.setenv(FACTORY_ENV, FACTORY)
    docs = _write_docs(tmp_path / "docs")
    from llm2vec_rag.cli.main import cli

    runner = CliRunner()
    res = runner.invoke(cli, ["index", str(docs), "--index", str(tmp_path / "ix"), "--model", "fake:", "--quiet"])
    assert res.exit_code == 0, res.output
    return runner, cli, tmp_path / "ix"


@pytest.mark.parametrize("mode", ["hybrid", "dense", "lexical"])
def test_cli_search_every_mode(cli_env, mode):
    runner, cli, ix = cli_env
    res = runner.invoke(cli, ["search", "quagga zebra stripes", "--index", str(ix), "--mode", mode, "--json", "-k", "2"])
    assert res.exit_code == 0, res.output
    rows = [json.loads(line) for line in res.output.splitlines()]
    assert rows[0]["source"].endswith("zebra.md") and all(r["mode"] == mode for r in rows)
    assert {"dense_score", "lexical_score", "score"} <= set(rows[0])
    assert (rows[0]["dense_score"] is None) == (mode == "lexical")
    assert (rows[0]["lexical_score"] is None) == (mode == "dense")


def test_cli_search_default_is_hybrid_and_options_checked(cli_env):
    runner, cli, ix = cli_env
    res = runner.invoke(cli, ["search", "zebra", "--index", str(ix), "--json", "--fusion", "rrf"])
    assert res.exit_code == 0 and json.loads(res.output.splitlines()[0])["mode"] == "hybrid"
    bad = runner.invoke(cli, ["search", "zebra", "--index", str(ix), "--alpha", "2"])
    assert bad.exit_code != 0 and "Traceback" not in bad.output


def _beir(folder):
    folder.mkdir()
    corpus = [{"_id": k, "title": k, "text": t} for k, t in TEXTS.items()]
    (folder / "corpus.jsonl").write_text("".join(json.dumps(r) + "\n" for r in corpus))
    queries = [{"_id": "q1", "text": "quagga stripes and flies"}, {"_id": "q2", "text": "aircraft lift"}]
    (folder / "queries.jsonl").write_text("".join(json.dumps(r) + "\n" for r in queries))
    (folder / "qrels").mkdir()
    (folder / "qrels" / "test.tsv").write_text("query-id\tcorpus-id\tscore\nq1\tzebra\t1\nq2\twings\t1\n")
    return folder


@pytest.mark.parametrize("mode", ["lexical", "hybrid", "dense"])
def test_eval_retrieval_modes(cli_env, tmp_path, mode):
    runner, cli, _ = cli_env
    data = _beir(tmp_path / "beir")
    res = runner.invoke(cli, ["eval", "retrieval", str(data), "--model", "fake:", "--mode", mode, "--json", "--quiet"])
    assert res.exit_code == 0, res.output
    out = json.loads(res.output)
    assert out["mode"] == mode and out["ndcg@10"] == 1.0
    assert ("model" in out) == (mode != "lexical")


def test_eval_lexical_loads_no_model_and_encodes_nothing(tmp_path, isolated_cache):
    """--mode lexical never touches --model: a path that is no model at all still evaluates, and no
    document vectors are cached."""
    from llm2vec_rag.cli.main import cli

    data = _beir(tmp_path / "beir")
    res = CliRunner().invoke(cli, ["eval", "retrieval", str(data), "--model", str(tmp_path / "no-such-model"),
                                   "--mode", "lexical", "--json", "--quiet"])
    assert res.exit_code == 0, res.output
    out = json.loads(res.stdout)
    assert out["mode"] == "lexical" and out["ndcg@10"] == 1.0 and "model" not in out
    assert not (isolated_cache / "eval-embeddings").exists()
