"""Retrieval metrics against hand-computed values, the BEIR loader, the embedding cache and the CLI."""
from __future__ import annotations

import json
import math

import numpy as np
import pytest
from click.testing import CliRunner

from fakes import FACTORY, FakeEncoder
from llm2vec_rag.errors import LLM2VecError
from llm2vec_rag.evaluation import retrieval
from llm2vec_rag.evaluation.retrieval import (evaluate_rankings, load_beir, mrr_at_k, ndcg_at_k, recall_at_k,
                                              run_retrieval_eval)


def test_ndcg_hand_computed():
    # ranked d1 (gain 0), d2 (gain 1), d3 (gain 2):
    #   DCG  = 0/log2(2) + 1/log2(3) + 2/log2(4) = 0.63093 + 1.0 = 1.63093
    #   IDCG = 2/log2(2) + 1/log2(3)             = 2.0 + 0.63093 = 2.63093
    #   nDCG = 1.63093 / 2.63093 = 0.61990
    relevant = {"d2": 1, "d3": 2}
    assert ndcg_at_k(["d1", "d2", "d3"], relevant, 10) == pytest.approx(0.61990, abs=1e-5)
    assert ndcg_at_k(["d3", "d2", "d1"], relevant, 10) == pytest.approx(1.0)
    assert ndcg_at_k(["d1", "d2", "d3"], relevant, 1) == 0.0
    # a relevant document below the cut-off does not count, but stays in the ideal
    assert ndcg_at_k(["x"] * 10 + ["d3"], {"d3": 1}, 10) == 0.0
    assert ndcg_at_k(["d9", "d3"], {"d3": 1, "d4": 1}, 10) == pytest.approx((1 / math.log2(3)) / (1 + 1 / math.log2(3)))


def test_mrr_and_recall():
    assert mrr_at_k(["a", "b", "c"], {"c": 1}, 10) == pytest.approx(1 / 3)
    assert mrr_at_k(["a", "b", "c"], {"c": 1}, 2) == 0.0
    assert recall_at_k(["a", "b", "c"], {"a": 1, "c": 1, "z": 1}, 2) == pytest.approx(1 / 3)
    assert recall_at_k(["a", "b", "c"], {"a": 1, "c": 1, "z": 1}, 100) == pytest.approx(2 / 3)
    means = evaluate_rankings({"q1": ["a", "b"], "q2": ["x"]}, {"q1": {"a": 1}, "q2": {"y": 1}})
    assert means == {"ndcg@10": 0.5, "mrr@10": 0.5, "recall@10": 0.5, "recall@100": 0.5}


def write_beir(root, docs, queries, qrels, split="test"):
    root.mkdir(parents=True, exist_ok=True)
    with open(root / "corpus.jsonl", "w") as fh:
        for _id, (title, text) in docs.items():
            fh.write(json.dumps({"_id": _id, "title": title, "text": text}) + "\n")
    with open(root / "queries.jsonl", "w") as fh:
        for _id, text in queries.items():
            fh.write(json.dumps({"_id": _id, "text": text}) + "\n")
    (root / "qrels").mkdir(exist_ok=True)
    lines = ["query-id\tcorpus-id\tscore"] + [f"{q}\t{d}\t{s}" for q, d, s in qrels]
    (root / "qrels" / f"{split}.tsv").write_text("\n".join(lines) + "\n")
    return root


TOPICS = ["volcano lava eruption", "penguin antarctic colony", "violin orchestra concert", "glacier ice melting",
          "rocket orbit launch", "coffee bean roasting", "chess opening gambit", "tomato garden soil"]


@pytest.fixture
def tiny_beir(tmp_path):
    docs = {f"d{i}": (f"About {t.split()[0]}", f"A long text on {t} and more.") for i, t in enumerate(TOPICS)}
    docs["noise"] = ("Unrelated", "Nothing to see here.")
    queries = {f"q{i}": f"question on {t}" for i, t in enumerate(TOPICS)}
    queries["unjudged"] = "no qrels for this one"
    qrels = [(f"q{i}", f"d{i}", 1) for i in range(len(TOPICS))] + [("q0", "noise", 0)]
    return write_beir(tmp_path / "tiny", docs, queries, qrels)


def test_load_beir(tiny_beir):
    data = load_beir(tiny_beir)
    assert data.name == "tiny" and len(data.corpus_ids) == 9
    assert data.corpus_texts[0] == "About volcano A long text on volcano lava eruption and more."
    assert "unjudged" not in data.queries and set(data.qrels["q0"]) == {"d0"}  # score 0 is not relevant
    small = load_beir(tiny_beir, max_docs=3)
    assert small.corpus_ids == ["d0", "d1", "d2"] and small.corpus_hash != data.corpus_hash
    with pytest.raises(LLM2VecError, match="available splits: test"):
        load_beir(tiny_beir, split="dev")
    with pytest.raises(LLM2VecError, match="does not exist"):
        load_beir(tiny_beir / "nope")
    with open(tiny_beir / "corpus.jsonl", "a") as fh:
        fh.write("{broken\n")
    with pytest.raises(LLM2VecError, match=r"corpus.jsonl:10: not valid JSON"):
        load_beir(tiny_beir)


def test_run_eval_and_cache(tiny_beir):
    encoder = FakeEncoder()
    data = load_beir(tiny_beir)
    first = run_retrieval_eval(encoder, data, show_progress=False)
    assert first["ndcg@10"] == pytest.approx(1.0) and first["recall@100"] == pytest.approx(1.0)
    assert first["docs_from_cache"] is False and first["queries"] == 8 and first["documents"] == 9
    calls = encoder.calls
    again = run_retrieval_eval(encoder, data, show_progress=False)
    assert again["docs_from_cache"] is True and encoder.calls - calls == 8  # only the queries
    assert {k: again[k] for k in ("ndcg@10", "mrr@10")} == {k: first[k] for k in ("ndcg@10", "mrr@10")}
    other = run_retrieval_eval(FakeEncoder(salt="x"), data, show_progress=False)  # another model: no reuse
    assert other["docs_from_cache"] is False


def test_interrupted_encoding_resumes_from_shards(tiny_beir, monkeypatch):
    monkeypatch.setattr(retrieval, "SHARD_SIZE", 2)
    data = load_beir(tiny_beir)

    class Failing(FakeEncoder):
        def encode_documents(self, documents, **options):
            if self.calls >= 4:
                raise KeyboardInterrupt
            return super().encode_documents(documents, **options)

    with pytest.raises(KeyboardInterrupt):
        run_retrieval_eval(Failing(), data, show_progress=False)
    resumed = FakeEncoder()
    vectors, cached = retrieval.encode_corpus_cached(resumed, data, show_progress=False)
    assert resumed.calls == 9 - 4 and not cached
    fresh, _ = retrieval.encode_corpus_cached(FakeEncoder(), data, show_progress=False, use_cache=False)
    np.testing.assert_allclose(vectors, fresh, atol=1e-6)


def test_default_instruction_per_dataset(tiny_beir, tmp_path):
    encoder = FakeEncoder()
    assert retrieval.default_instruction("SciFact", encoder).startswith("Given a scientific claim")
    assert retrieval.default_instruction("tiny", encoder) == encoder.query_instruction


def test_cli_eval_retrieval(tiny_beir, monkeypatch):
    from llm2vec_rag.cli.main import cli
    from llm2vec_rag.index.model import FACTORY_ENV

    monkeypatch.setenv(FACTORY_ENV, FACTORY)
    monkeypatch.setattr("llm2vec_rag.cli.eval.load_encoder", lambda model, *a, **k: FakeEncoder())
    result = CliRunner().invoke(cli, ["eval", "retrieval", str(tiny_beir), "--json", "--quiet",
                                      "--instruction", ""])
    assert result.exit_code == 0, result.output
    row = json.loads(result.stdout)
    assert row["ndcg@10"] == pytest.approx(1.0) and row["instruction"] == ""
    table = CliRunner().invoke(cli, ["eval", "retrieval", str(tiny_beir), "--quiet"])
    assert "ndcg@10" in table.stdout and "1.0000" in table.stdout
    bad = CliRunner().invoke(cli, ["eval", "retrieval", str(tiny_beir), "--split", "dev"])
    assert bad.exit_code == 1 and bad.stderr.startswith("error: ")
