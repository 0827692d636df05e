"""mteb 2.x on a local BEIR folder, offline: our wrapper's nDCG@10 equals ``llm2vec-rag eval retrieval``'s."""
from __future__ import annotations

import json

import numpy as np
import pytest

pytest.importorskip("mteb", reason="mteb is not installed (pip install 'llm2vec-rag[mteb]')")

import mteb  # noqa: E402
from mteb.types import PromptType  # noqa: E402

from llm2vec_rag import LLM2Vec  # noqa: E402
from llm2vec_rag.evaluation.retrieval import DATASET_INSTRUCTIONS, load_beir, run_retrieval_eval  # noqa: E402
from llm2vec_rag.integrations.mteb import LLM2VecMTEB, beir_retrieval_task  # noqa: E402

from conftest import CORPUS  # noqa: E402

QUERIES = ["what do cells do", "how do planes fly", "where does sediment go", "what is attention",
           "how are proteins shaped", "what powers a cell"]
RELEVANT = [[0], [2, 3], [6], [5], [7], [1]]


@pytest.fixture(scope="module")
def beir_dir(tmp_path_factory):
    root = tmp_path_factory.mktemp("beir") / "scifact"  # the name picks the paper's SciFact instruction
    (root / "qrels").mkdir(parents=True)
    docs = sorted(set(CORPUS), key=CORPUS.index)
    with open(root / "corpus.jsonl", "w", encoding="utf-8") as f:
        for i, text in enumerate(docs):
            f.write(json.dumps({"_id": f"d{i}", "title": f"Title {i}", "text": text}) + "\n")
    with open(root / "queries.jsonl", "w", encoding="utf-8") as f:
        for i, text in enumerate(QUERIES):
            f.write(json.dumps({"_id": f"q{i}", "text": text}) + "\n")
    lines = ["query-id\tcorpus-id\tscore"] + [f"q{i}\td{d}\t1" for i, rel in enumerate(RELEVANT) for d in rel]
    (root / "qrels" / "test.tsv").write_text("\n".join(lines) + "\n", encoding="utf-8")
    return root


@pytest.fixture(scope="module")
def encoder(tiny_model_dir):
    return LLM2Vec.from_pretrained(str(tiny_model_dir), dtype="float32", device="cpu")


def test_mteb_evaluate_offline_matches_our_eval(encoder, beir_dir, tmp_path):
    model = LLM2VecMTEB(encoder)
    assert "/" in model.mteb_model_meta.name
    result = mteb.evaluate(model, beir_retrieval_task(beir_dir), cache=None, show_progress_bar=False)
    score = result.task_results[0].scores["test"][0]
    ours = run_retrieval_eval(encoder, load_beir(beir_dir), show_progress=False, use_cache=False)
    assert score["main_score"] == pytest.approx(ours["ndcg@10"], abs=0.005)
    assert score["ndcg_at_10"] == pytest.approx(ours["ndcg@10"], abs=0.005)


def test_queries_get_the_paper_instruction_documents_none(encoder, beir_dir):
    model = LLM2VecMTEB(encoder)
    task = beir_retrieval_task(beir_dir)
    batches = [{"text": QUERIES[:2]}]
    q = model.encode(batches, task_metadata=task.metadata, hf_split="test", hf_subset="default",
                     prompt_type=PromptType.query)
    assert np.allclose(q, encoder.encode([[DATASET_INSTRUCTIONS["scifact"], t] for t in QUERIES[:2]]), atol=1e-6)
    d = model.encode(batches, task_metadata=task.metadata, hf_split="test", hf_subset="default",
                     prompt_type=PromptType.document)
    assert np.allclose(d, encoder.encode(QUERIES[:2]), atol=1e-6)
    custom = LLM2VecMTEB(encoder, instructions={"scifact": "Find it:"})
    assert custom.query_instruction(task.metadata, PromptType.query) == "Find it:"
    other = beir_retrieval_task(beir_dir, name="MyLocalTask", instruction="Retrieve passages.")
    assert model.query_instruction(other.metadata, PromptType.query) == "Retrieve passages:"
