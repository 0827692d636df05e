"""Pair training: gradient caching, CoSENT on scored pairs, one source per batch, several dev sets, resume."""
from __future__ import annotations

import json
import math
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from click.testing import CliRunner
from conftest import CORPUS
from safetensors.torch import load_file
from test_train import _tiny_beir

from llm2vec_rag.cli.main import cli
from llm2vec_rag.encoder import forward_batch
from llm2vec_rag.evaluation.retrieval import load_beir, sample_queries
from llm2vec_rag.instructions import tokenize_all
from llm2vec_rag.training import SupervisedConfig, TrainingDataError
from llm2vec_rag.training.data import BatchOrder, read_pairs_jsonl
from llm2vec_rag.training.gradcache import cached_backward, plain_loss
from llm2vec_rag.training.losses import cosent, info_nce
from llm2vec_rag.training.trainer import load_training_model

FAST = dict(bf16="off", threads=1, quiet=True, save_every=0, log_every=1)


def _grads(model) -> dict[str, torch.Tensor]:
    return {n: p.grad.detach().clone() for n, p in model.named_parameters() if p.requires_grad and p.grad is not None}


@pytest.mark.parametrize("dropout", [0.0, 0.3])
def test_gradient_caching_gives_the_uncached_gradients(tiny_model_dir, tmp_path, dropout):
    cfg = SupervisedConfig(data="x", output_dir=str(tmp_path), model=str(tiny_model_dir), lora_dropout=dropout,
                           **FAST)
    tm = load_training_model(cfg)
    tm.model.train()
    with torch.no_grad():  # a trained-looking LoRA (fresh B is zero, which zeroes A's gradients)
        for name, param in tm.model.named_parameters():
            if "lora_B" in name:
                param.normal_(0, 0.1)
    pad = int(tm.tokenizer.pad_token_id)
    queries = tokenize_all(tm.tokenizer, [["Find it:", t[:30]] for t in CORPUS[:6]], 32)
    docs = tokenize_all(tm.tokenizer, CORPUS[:6] + CORPUS[6:8], 32)  # 6 positives + 2 hard negatives

    def embed(items):
        return forward_batch(tm.model, items, pad, "mean", tm.device)

    def loss_fn(vectors):
        q, d = vectors
        return info_nce(q, d[:6], d[6:], scale=20.0) + cosent(q[:4], d[:4], torch.tensor([0.9, 0.1, 0.5, 0.3]))

    torch.manual_seed(3)
    plain = plain_loss(embed, [queries, docs], loss_fn)
    plain.backward()
    expected = _grads(tm.model)
    assert expected and all(g.abs().sum() > 0 for g in expected.values())
    # with dropout, one chunk per group replays the uncached pass's masks exactly (same random stream);
    # without it, any chunking gives the same gradients
    for chunk in ([8] if dropout else [1, 3, 8]):
        tm.model.zero_grad(set_to_none=True)
        torch.manual_seed(3)
        cached = cached_backward(embed, [queries, docs], loss_fn, chunk, tm.device, weight=0.5)
        assert not cached.requires_grad
        assert cached.item() == pytest.approx(plain.item(), rel=1e-5)
        got = _grads(tm.model)
        assert got.keys() == expected.keys()
        for name in expected:  # relative to the tensor's largest entry: float32 summation-order noise only
            scale = expected[name].abs().max().item()
            assert (got[name] - 0.5 * expected[name]).abs().max().item() <= 1e-5 * scale, (chunk, name)


def test_cosent_matches_hand_computation():
    a = torch.tensor([[1.0, 0.0], [1.0, 0.0], [1.0, 0.0]])
    b = torch.tensor([[1.0, 0.0], [0.0, 1.0], [1.0, 1.0]])  # cosines 1, 0, 0.7071
    scores = torch.tensor([0.2, 0.9, 0.5])
    cos = [1.0, 0.0, math.sqrt(0.5)]
    terms = [20 * (cos[j] - cos[i]) for i in range(3) for j in range(3) if scores[i] > scores[j]]
    expected = math.log(1 + sum(math.exp(t) for t in terms))
    assert cosent(a, b, scores, scale=20.0).item() == pytest.approx(expected, rel=1e-5)
    # the right order costs almost nothing
    assert cosent(a, b, torch.tensor([0.9, 0.1, 0.5])).item() < 0.01 < expected


def test_batches_hold_one_source_and_are_a_pure_function_of_the_seed():
    sources = ["a"] * 10 + ["b"] * 7 + ["c"] * 5
    order = BatchOrder(len(sources), 3, seed=1, sources=sources)
    again = BatchOrder(len(sources), 3, seed=1, sources=sources)
    seen = set()
    for k in range(order.per_epoch * 2):
        batch = order.batch(k)
        assert batch == again.batch(k) and len(batch) == 3
        assert len({sources[i] for i in batch}) == 1
        seen.add(sources[batch[0]])
    assert seen == {"a", "b", "c"} and order.per_epoch == 3 + 2 + 1


def test_read_pairs_fields_and_errors(tmp_path):
    path = tmp_path / "p.jsonl"
    path.write_text(json.dumps({"query": "a b", "positive": "c d", "score": 0.4, "source": "stsb", "instruction": ""})
                    + "\n" + json.dumps({"query": "x", "positive": "y", "negative": "z", "source": "sick"}) + "\n")
    first, second = read_pairs_jsonl(path)
    assert (first.score, first.source, first.instruction) == (0.4, "stsb", "")
    assert (second.score, second.negatives, second.instruction) == (None, ["z"], None)
    path.write_text(json.dumps({"query": "a", "positive": "b", "score": 3}) + "\n")
    with pytest.raises(TrainingDataError, match=r"p.jsonl:1: 'score' must be a number from 0 to 1"):
        read_pairs_jsonl(path)


def test_sample_queries_keeps_relevant_documents_and_distractors(tmp_path):
    data = load_beir(_tiny_beir(tmp_path / "tinybeir"), split="train")
    small = sample_queries(data, 3, max_docs=5, seed=0)
    assert len(small.qrels) == 3 and set(small.queries) == set(small.qrels)
    relevant = {d for rel in small.qrels.values() for d in rel}
    assert relevant <= set(small.corpus_ids) and len(small.corpus_ids) == 5
    assert sample_queries(data, 3, max_docs=5, seed=0).qrels == small.qrels  # fixed


def _pairs_file(path: Path) -> Path:
    rows = []
    for i, t in enumerate(CORPUS[:8]):
        rows.append({"query": f"topic {i}: {t[:25]}", "positive": t, "source": "docs", "instruction": "Find:"})
    for i in range(8):
        a, b = CORPUS[i], CORPUS[(i + 1) % 8]
        rows.append({"query": a, "positive": b if i % 2 else a[::-1], "score": (i % 5) / 4, "source": "sts",
                     "instruction": ""})
    for i in range(8):
        rows.append({"query": CORPUS[i][:40], "positive": CORPUS[i][10:], "negative": CORPUS[(i + 4) % 8],
                     "source": "nli"})
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


def _sts_folder(root: Path) -> Path:
    root.mkdir()
    lines = [f"g\tf\t2012\t{i:04d}\t{(i * 7) % 6}.0\t{CORPUS[i % 8]}\t{CORPUS[(i * 3) % 8]}" for i in range(12)]
    (root / "sts-dev.csv").write_text("\n".join(lines) + "\n")
    return root


def test_pairs_via_cli_with_gradient_caching_scores_sources_and_two_dev_sets(tiny_model_dir, tmp_path):
    pairs = _pairs_file(tmp_path / "pairs.jsonl")
    beir = _tiny_beir(tmp_path / "tinybeir")
    sts = _sts_folder(tmp_path / "stsb")
    out = tmp_path / "run"
    result = CliRunner().invoke(cli, [
        "train", "supervised", str(pairs), "--output-dir", str(out), "--model", str(tiny_model_dir),
        "--steps", "4", "--batch-size", "6", "--mini-batch-size", "4", "--max-length", "32", "--lr", "3e-3",
        "--bf16", "off", "--threads", "1", "--quiet", "--json", "--log-every", "1", "--eval-every", "2", "--eval-at-start",
        "--eval-data", str(sts), "--eval-data", str(beir), "--eval-split", "dev,train", "--eval-max-queries", "4",
        "--eval-max-items", "6"])
    assert result.exit_code == 0, result.output
    card = json.loads((out / "training_card.json").read_text())
    assert card["data"]["sources"] == {"docs": 8, "nli": 8, "sts": 8} and card["data"]["scored"] == 8
    assert [e["step"] for e in card["evals"]] == [0, 2, 4]
    for entry in card["evals"]:
        assert {"stsb_dev_spearman", "tinybeir_train_q4_ndcg@10"} <= entry.keys()
    # step 0 is the starting model; with a query sample, --eval-max-items caps only the BEIR documents
    from llm2vec_rag import LLM2Vec
    from llm2vec_rag.evaluation.sts import evaluate_sts, limit_pairs, load_sts

    start = LLM2Vec.from_pretrained(str(tiny_model_dir), dtype="float32", device="cpu")
    whole = evaluate_sts(start, load_sts(sts, split="dev"))["spearman"]
    capped = evaluate_sts(start, limit_pairs(load_sts(sts, split="dev"), 6))["spearman"]
    assert whole != capped and card["evals"][0]["stsb_dev_spearman"] == pytest.approx(whole, abs=1e-3)
    log = [json.loads(line) for line in (out / "train_log.jsonl").read_text().splitlines()]
    assert [e["step"] for e in log] == [1, 2, 3, 4] and all("eta_s" in e and math.isfinite(e["loss"]) for e in log)
    assert log[-1]["eta_s"] == 0


def _docs_folder(root: Path) -> Path:
    """A small folder of Markdown and text files with titles, sections and multi-sentence passages."""
    root.mkdir()
    for i in range(6):
        a, b, c = CORPUS[i % 8], CORPUS[(i + 1) % 8], CORPUS[(i + 2) % 8]
        (root / f"note_{i}.md").write_text(
            f"# Topic {i} notes\n\nIntro for topic {i}. {a} {b}\n\n## Details {i}\n\n{b} {c} {a}\n\n"
            f"### Deeper {i}\n\nThe deeper part of topic {i} has words. {c} More about it here now.\n")
    (root / "plain-text.txt").write_text(f"{CORPUS[3]} {CORPUS[4]} {CORPUS[5]}\n")
    return root


def test_weak_pairs_from_a_folder_have_every_kind_and_bm25_negatives(tmp_path):
    from llm2vec_rag.training.weak import add_bm25_negatives, folder_pairs

    pairs, summary = folder_pairs(str(_docs_folder(tmp_path / "docs")), min_words=4)
    kinds = {p.source for p in pairs}
    assert kinds == {"heading", "title", "ict"} and summary["files"] == 7
    heading = [p for p in pairs if p.source == "heading"]
    assert any(p.query == "Topic 2 notes > Details 2 > Deeper 2" for p in heading)
    assert all("#" not in p.positive for p in pairs)  # heading lines are not part of the text
    titles = {p.query for p in pairs if p.source == "title"}
    assert "plain text" in titles and "Topic 0 notes" in titles  # file name when there is no heading
    for p in (p for p in pairs if p.source == "ict"):
        assert p.query not in p.positive  # the cloze sentence is removed from its passage
    assert add_bm25_negatives(pairs) > 0
    for p in pairs:
        assert p.positive not in p.negatives
    again, _ = folder_pairs(str(tmp_path / "docs"), min_words=4)
    assert [(p.query, p.positive) for p in again] == [(p.query, p.positive) for p in pairs]  # deterministic


def _command(data: Path, model: Path, out: Path, steps: int, resume: bool = False) -> list[str]:
    cmd = [sys.executable, "-c", "from llm2vec_rag.cli.main import main; main()", "train", "weak", str(data),
           "--output-dir", str(out), "--model", str(model), "--steps", str(steps), "--batch-size", "6",
           "--mini-batch-size", "4", "--max-length", "32", "--min-words", "4", "--lr", "3e-3", "--warmup-steps", "2",
           "--save-every", "2", "--log-every", "1", "--bf16", "off", "--threads", "1", "--seed", "5", "--quiet"]
    return cmd + (["--resume"] if resume else [])


def test_weak_run_killed_then_resumed_matches_the_uninterrupted_run(tiny_model_dir, tmp_path):
    """train weak (with gradient caching): SIGKILL after a checkpoint, --resume, same weights as a straight run."""
    steps = 8
    data = _docs_folder(tmp_path / "docs")
    env = {**os.environ, "LLM2VEC_RAG_CACHE": str(tmp_path / "cache"), "HF_HUB_OFFLINE": "1",
           "OMP_NUM_THREADS": "1", "TOKENIZERS_PARALLELISM": "false"}
    killed = tmp_path / "killed"
    proc = subprocess.Popen(_command(data, tiny_model_dir, killed, steps), env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE)
    deadline = time.monotonic() + 240
    checkpoints = killed / "checkpoints"
    while time.monotonic() < deadline and proc.poll() is None:
        if checkpoints.is_dir() and any(p.name.startswith("step-") and not p.name.endswith(".tmp")
                                        for p in checkpoints.iterdir()):
            break
        time.sleep(0.02)
    assert proc.poll() is None, "the run ended before it could be killed: " + proc.stderr.read().decode()[-500:]
    proc.send_signal(signal.SIGKILL)
    proc.wait(30)
    assert not (killed / "adapter_model.safetensors").exists()
    again = subprocess.run(_command(data, tiny_model_dir, killed, steps), env=env, capture_output=True, text=True,
                           timeout=240)  # without --resume: refused, nothing overwritten
    assert again.returncode == 1 and "already holds a training run" in again.stderr
    (data / "note_0.md").write_text("# Changed\n\nThe folder changed after the run started, which must not matter.\n")
    resumed = subprocess.run(_command(data, tiny_model_dir, killed, steps, resume=True), env=env,
                             capture_output=True, text=True, timeout=240)
    assert resumed.returncode == 0, resumed.stderr[-1000:]
    card = json.loads((killed / "training_card.json").read_text())
    assert card["recipe"] == "weak" and card["steps"] == steps
    straight = tmp_path / "straight"
    data = _docs_folder(tmp_path / "docs2")  # the folder as it was when the killed run started
    full = subprocess.run(_command(data, tiny_model_dir, straight, steps), env=env, capture_output=True, text=True,
                          timeout=240)
    assert full.returncode == 0, full.stderr[-1000:]
    a = load_file(str(killed / "adapter_model.safetensors"))
    b = load_file(str(straight / "adapter_model.safetensors"))
    assert a.keys() == b.keys() and a
    for key in a:
        assert (a[key] - b[key]).abs().max().item() <= 1e-6, key
    log = [json.loads(line)["step"] for line in (killed / "train_log.jsonl").read_text().splitlines()]
    assert log == list(range(1, steps + 1))


def test_resume_counts_a_setting_added_after_the_run_started_as_its_default(tiny_model_dir, tmp_path):
    pairs = _pairs_file(tmp_path / "pairs.jsonl")
    out = tmp_path / "run"
    base = ["train", "supervised", str(pairs), "--output-dir", str(out), "--model", str(tiny_model_dir),
            "--batch-size", "6", "--max-length", "32", "--bf16", "off", "--threads", "1", "--quiet", "--save-every", "1"]
    assert CliRunner().invoke(cli, [*base, "--steps", "1"]).exit_code == 0
    config = json.loads((out / "run_config.json").read_text())
    del config["cosent_scale"]  # as written by a version without the setting
    (out / "run_config.json").write_text(json.dumps(config))
    assert CliRunner().invoke(cli, [*base, "--steps", "2", "--resume"]).exit_code == 0
    (out / "run_config.json").write_text(json.dumps(config))  # again without it
    changed = CliRunner().invoke(cli, [*base, "--steps", "3", "--resume", "--cosent-scale", "5"])
    assert changed.exit_code == 1 and "cosent_scale" in changed.output
