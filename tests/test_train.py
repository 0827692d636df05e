"""Training: masking, the MNTP loss shift, InfoNCE, readers, batch order, dropout, and adapters that load.

Tiny random models (hidden 64, 2 layers) and a few steps each; fp32 (bf16 off)
so trained and reloaded vectors can be compared tightly.
"""
from __future__ import annotations

import gzip
import json
import math
from pathlib import Path

import numpy as np
import pytest
import torch
from click.testing import CliRunner
from conftest import CORPUS, build_tiny_tokenizer, write_tiny_model_dir

from llm2vec_rag import LLM2Vec
from llm2vec_rag.cli.main import cli
from llm2vec_rag.training import (
    MNTPConfig,
    SimCSEConfig,
    SupervisedConfig,
    TrainingDataError,
    TrainingError,
    train_mntp,
    train_simcse,
    train_supervised,
)
from llm2vec_rag.training.data import BatchOrder, read_pairs_jsonl, read_texts
from llm2vec_rag.training.losses import info_nce
from llm2vec_rag.training.mntp import IGNORE, mask_tokens, mntp_loss, resolve_mask_token
from llm2vec_rag.training.recipes import encoder_view
from llm2vec_rag.training.trainer import lr_at, set_attention_dropout

FAST = dict(bf16="off", threads=1, quiet=True, save_every=0, log_every=1)


def write_causal_dir(path: Path, seed: int = 0) -> Path:
    """A tiny LlamaForCausalLM (with its LM head) and the tiny tokenizer."""
    return write_tiny_model_dir(path, seed=seed, causal_lm=True)


@pytest.fixture(scope="module")
def causal_dir(tmp_path_factory) -> Path:
    return write_causal_dir(tmp_path_factory.mktemp("tiny-causal"))


@pytest.fixture(scope="module")
def corpus_file(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("corpus") / "corpus.txt"
    path.write_text("\n".join(CORPUS * 2) + "\n", encoding="utf-8")
    return path


def _vectors(encoder_or_tm, texts, pooling="mean"):
    if isinstance(encoder_or_tm, LLM2Vec):
        return encoder_or_tm.encode(texts)
    return encoder_view(encoder_or_tm, pooling).encode(texts)


# --------------------------------------------------------------------------- masking and losses
def test_mask_tokens_selects_rate_never_special_and_splits_80_10_10():
    gen = torch.Generator().manual_seed(0)
    ids = torch.randint(5, 500, (64, 256), generator=gen)
    ids[:, 0] = 1  # BOS
    ids[:, 100] = 2  # EOS in the middle
    masked, labels = mask_tokens(ids, mask_token_id=4, special_ids=[0, 1, 2], vocab_size=512, probability=0.2,
                                 generator=torch.Generator().manual_seed(1))
    selected = labels != IGNORE
    assert not selected[:, 0].any() and not selected[:, 100].any()
    assert torch.equal(labels[selected], ids[selected])
    assert torch.equal(masked[~selected], ids[~selected])  # unselected tokens are untouched
    rate = selected.float().mean().item()
    assert 0.18 < rate < 0.22
    n = selected.sum().item()
    to_mask = (masked[selected] == 4).sum().item() / n
    kept = (masked[selected] == ids[selected]).sum().item() / n
    assert 0.77 < to_mask < 0.83 and 0.08 < kept < 0.12  # random replacements may rarely equal the original


def test_mask_tokens_masks_at_least_one_token_per_row():
    ids = torch.tensor([[1, 7, 8, 2]])
    _, labels = mask_tokens(ids, 4, [1, 2], 16, probability=1e-9, generator=torch.Generator().manual_seed(0))
    assert (labels != IGNORE).sum() == 1


def test_mntp_loss_predicts_token_i_from_output_i_minus_1():
    vocab = 6
    labels = torch.tensor([[IGNORE, IGNORE, 3, IGNORE, 5]])
    hidden = torch.zeros(1, 5, vocab)
    hidden[0, 1, 3] = 50.0  # the output at 1 says "3": the label at 2
    hidden[0, 3, 5] = 50.0  # the output at 3 says "5": the label at 4
    head = torch.nn.Linear(vocab, vocab, bias=False)
    with torch.no_grad():
        head.weight.copy_(torch.eye(vocab))
    assert mntp_loss(hidden, labels, head).item() < 1e-6
    unshifted = torch.zeros(1, 5, vocab)
    unshifted[0, 2, 3] = 50.0
    unshifted[0, 4, 5] = 50.0
    assert mntp_loss(unshifted, labels, head).item() > 1.0


def test_info_nce_matches_hand_computation_and_uses_hard_negatives():
    q = torch.eye(4)
    expected = -math.log(math.exp(2) / (math.exp(2) + 3))  # diagonal 1 x scale 2, three off-diagonal zeros
    assert info_nce(q, q.clone(), scale=2.0).item() == pytest.approx(expected, rel=1e-5)
    # a hard negative identical to query 0 competes with its positive: (loss_0 + 3 * loss_other) / 4
    with_neg = -math.log(math.exp(2) / (2 * math.exp(2) + 3))
    other = -math.log(math.exp(2) / (math.exp(2) + 4))
    harder = info_nce(q, q.clone(), negatives=q[:1].clone(), scale=2.0).item()
    assert harder == pytest.approx((with_neg + 3 * other) / 4, rel=1e-5)
    assert info_nce(q * 3.0, q, scale=2.0).item() == pytest.approx(expected, rel=1e-5)  # cosine, not dot


def test_lr_schedule_warms_up_then_decays_to_zero():
    assert lr_at(0, 10, 1.0, 2) == pytest.approx(0.5)
    assert lr_at(1, 10, 1.0, 2) == pytest.approx(1.0)
    assert lr_at(9, 10, 1.0, 2) == pytest.approx(1 / 8)
    assert lr_at(5, 10, 1.0, 0) == pytest.approx(0.5)


def test_mask_token_defaults_to_underscore(causal_dir):
    tok = build_tiny_tokenizer()
    token, tid = resolve_mask_token(tok)
    assert token == "_" and tok.convert_ids_to_tokens(tid) == "_"
    assert resolve_mask_token(tok, "<unk>") == ("<unk>", tok.unk_token_id)


# --------------------------------------------------------------------------- data
def test_read_texts_layouts(tmp_path):
    folder = tmp_path / "docs"
    folder.mkdir()
    (folder / "a.txt").write_text("First paragraph\nstill first.\n\nSecond paragraph.\n", encoding="utf-8")
    (folder / "b.md").write_text("# Title\n\nBody text here.\n", encoding="utf-8")
    (folder / "c.bin").write_bytes(b"\x00\x01")
    assert read_texts(folder) == ["First paragraph still first.", "Second paragraph.", "# Title", "Body text here."]
    gz = tmp_path / "wikitext-sample.raw.gz"
    with gzip.open(gz, "wt", encoding="utf-8") as fh:
        fh.write(" \n = Valkyria = \n The game 's sales were 1 @,@ 000 @-@ strong ( in Japan ) . It sold well .\n")
    assert read_texts(gz) == ["The game's sales were 1,000-strong (in Japan). It sold well."]
    assert read_texts(gz, unit="sentence") == ["The game's sales were 1,000-strong (in Japan).", "It sold well."]
    wiki_folder = tmp_path / "wikitext-2-raw"
    wiki_folder.mkdir()
    (wiki_folder / "train.raw.gz").write_bytes(gz.read_bytes())
    assert read_texts(wiki_folder) == ["The game's sales were 1,000-strong (in Japan). It sold well."]
    jl = tmp_path / "t.jsonl"
    jl.write_text('{"text": "one"}\n\n{"text": "two"}\n{"txt": "bad"}\n', encoding="utf-8")
    with pytest.raises(TrainingDataError, match=r"t.jsonl:4:"):
        read_texts(jl)
    jl.write_text('{"text": "one"}\n{not json\n', encoding="utf-8")
    with pytest.raises(TrainingDataError, match=r"t.jsonl:2: not valid JSON"):
        read_texts(jl)


def test_read_pairs_errors_name_the_line(tmp_path):
    path = tmp_path / "pairs.jsonl"
    path.write_text('{"query": "q", "positive": "p", "negatives": ["n1", "n2"]}\n'
                    '{"query": "q2", "positive": "p2", "negative": "n"}\n'
                    '{"query": "q3"}\n', encoding="utf-8")
    with pytest.raises(TrainingDataError, match=r"pairs.jsonl:3: missing or empty string field 'positive'"):
        read_pairs_jsonl(path)
    path.write_text('{"query": "q", "positive": "p", "negatives": "not a list"}\n', encoding="utf-8")
    with pytest.raises(TrainingDataError, match=r"pairs.jsonl:1:"):
        read_pairs_jsonl(path)


def test_batch_order_is_pure_and_never_repeats_a_group():
    groups = [f"doc{i % 5}" for i in range(40)]  # 8 examples share each of 5 positives
    order = BatchOrder(40, 4, seed=3, groups=groups)
    again = BatchOrder(40, 4, seed=3, groups=groups)
    for index in range(3 * order.per_epoch):
        batch = order.batch(index)
        assert len(batch) == 4 and len({groups[i] for i in batch}) == 4
        assert again.batch(index) == batch  # a fresh object (a resumed run) sees the same batches
    assert order.per_epoch >= 8
    plain = BatchOrder(10, 3, seed=0)
    assert plain.per_epoch == 3 and sorted(sum((plain.batch(i) for i in range(3)), [])) != list(range(10))
    assert plain.batch(0) != plain.batch(3)  # the next epoch is reshuffled


# --------------------------------------------------------------------------- dropout
def test_simcse_attention_dropout_is_applied_in_train_mode_only(tiny_model_dir, tmp_path):
    from llm2vec_rag.training.trainer import load_training_model

    cfg = SimCSEConfig(data="x", output_dir=str(tmp_path), model=str(tiny_model_dir), lora_dropout=0.0, **FAST)
    tm = load_training_model(cfg, attention_dropout=0.3)
    attn = [m for m in tm.model.modules() if hasattr(m, "attention_dropout") and hasattr(m, "is_causal")]
    assert attn and all(m.attention_dropout == 0.3 for m in attn)
    ids = torch.tensor([[5, 6, 7, 8, 9, 10, 11, 12]])
    tm.model.train()
    a = tm.model(input_ids=ids).last_hidden_state
    b = tm.model(input_ids=ids).last_hidden_state
    assert not torch.allclose(a, b)  # two views differ
    tm.model.eval()
    assert torch.equal(tm.model(input_ids=ids).last_hidden_state, tm.model(input_ids=ids).last_hidden_state)
    set_attention_dropout(tm.model, 0.0)
    tm.model.train()
    assert torch.equal(tm.model(input_ids=ids).last_hidden_state, tm.model(input_ids=ids).last_hidden_state)


# --------------------------------------------------------------------------- end to end
TEXTS = ["Cells are the unit of life.", "Jet engines push air backwards.", "Rivers carry sediment to the sea."]


def test_mntp_adapter_loads_into_the_encoder_and_reproduces_vectors(causal_dir, corpus_file, tmp_path):
    out = tmp_path / "mntp"
    cfg = MNTPConfig(data=str(corpus_file), output_dir=str(out), model=str(causal_dir), steps=4, batch_size=4,
                     max_length=32, learning_rate=5e-3, **FAST)
    card, tm = train_mntp(cfg, return_model=True)
    from llm2vec_rag.bidirectional import check_attention

    check_attention(tm.model, True, pad_token_id=0)  # MNTP trained with bidirectional attention
    trained = _vectors(tm, TEXTS)
    assert card["steps"] == 4 and card["recipe"] == "mntp" and card["data"]["mask_token"] == "_"
    from safetensors import safe_open

    with safe_open(str(out / "adapter_model.safetensors"), "pt") as fh:
        keys = list(fh.keys())
    assert keys and all(k.startswith("base_model.model.layers.") for k in keys)  # saved against the base model
    loaded = LLM2Vec.from_pretrained(str(causal_dir), adapters=[str(out)], dtype="float32", device="cpu")
    base = LLM2Vec.from_pretrained(str(causal_dir), dtype="float32", device="cpu")
    np.testing.assert_allclose(loaded.encode(TEXTS), trained, rtol=1e-4, atol=1e-5)
    assert np.abs(base.encode(TEXTS) - trained).max() > 1e-3
    card_json = json.loads((out / "training_card.json").read_text())
    assert card_json["base_model"] == str(causal_dir) and card_json["steps"] == 4
    assert "LLM2Vec.from_pretrained" in (out / "README.md").read_text()
    log = [json.loads(line) for line in (out / "train_log.jsonl").read_text().splitlines()]
    assert [e["step"] for e in log] == [1, 2, 3, 4] and all(e["loss"] > 0 for e in log)


def test_simcse_stacks_on_mntp_and_loss_falls(causal_dir, corpus_file, tmp_path):
    mntp = tmp_path / "mntp"
    train_mntp(MNTPConfig(data=str(corpus_file), output_dir=str(mntp), model=str(causal_dir), steps=2,
                          batch_size=4, max_length=32, learning_rate=5e-3, **FAST))
    out = tmp_path / "simcse"
    cfg = SimCSEConfig(data=str(corpus_file), output_dir=str(out), model=str(causal_dir), adapters=[str(mntp)],
                       steps=12, batch_size=8, max_length=32, learning_rate=3e-3, unit="line", **FAST)
    card, tm = train_simcse(cfg, return_model=True)
    trained = _vectors(tm, TEXTS)
    losses = [h["loss"] for h in card_history(out)]
    assert np.mean(losses[-3:]) < np.mean(losses[:3])  # in-batch contrastive loss goes down
    assert card["load_with"]["adapters"] == [str(mntp), str(out)]
    stacked = LLM2Vec.from_pretrained(str(causal_dir), adapters=[str(mntp), str(out)], dtype="float32", device="cpu")
    np.testing.assert_allclose(stacked.encode(TEXTS), trained, rtol=1e-4, atol=1e-5)
    only_mntp = LLM2Vec.from_pretrained(str(causal_dir), adapters=[str(mntp)], dtype="float32", device="cpu")
    assert np.abs(only_mntp.encode(TEXTS) - trained).max() > 1e-3


def card_history(out: Path) -> list[dict]:
    return [json.loads(line) for line in (out / "train_log.jsonl").read_text().splitlines()]


def _tiny_beir(root: Path) -> Path:
    docs = {f"d{i}": text for i, text in enumerate(CORPUS[:8])}
    queries = {"q0": "what is a cell", "q1": "what powers a cell", "q2": "how do wings work", "q3": "jet engines",
               "q4": "embedding search", "q5": "attention in transformers", "q6": "rivers", "q7": "protein folding"}
    root.mkdir()
    (root / "qrels").mkdir()
    (root / "corpus.jsonl").write_text("".join(json.dumps({"_id": d, "title": "", "text": t}) + "\n"
                                               for d, t in docs.items()))
    (root / "queries.jsonl").write_text("".join(json.dumps({"_id": q, "text": t}) + "\n" for q, t in queries.items()))
    (root / "qrels" / "train.tsv").write_text("query-id\tcorpus-id\tscore\n"
                                              + "".join(f"q{i}\td{i}\t1\n" for i in range(8)) + "q1\td0\t1\n")
    (root / "qrels" / "test.tsv").write_text("query-id\tcorpus-id\tscore\n" + "".join(f"q{i}\td{i}\t1\n" for i in range(8)))
    return root


def test_supervised_on_beir_with_mined_negatives_and_eval(tiny_model_dir, tmp_path):
    beir = _tiny_beir(tmp_path / "tinybeir")
    out = tmp_path / "sup"
    cfg = SupervisedConfig(data=str(beir), output_dir=str(out), model=str(tiny_model_dir), steps=3, batch_size=4,
                           max_length=48, learning_rate=3e-3, mine_negatives=2, mine_skip=0,
                           eval_data=str(beir), eval_split="test", **FAST)
    card, tm = train_supervised(cfg, return_model=True)
    assert card["data"]["pairs"] == 9 and card["data"]["with_hard_negatives"] == 9
    assert card["data"]["instruction"]  # a generic retrieval instruction for an unknown dataset name
    assert card["evals"] and 0.0 <= card["evals"][-1]["tinybeir_test_ndcg@10"] <= 1.0
    loaded = LLM2Vec.from_pretrained(str(tiny_model_dir), adapters=[str(out)], dtype="float32", device="cpu")
    np.testing.assert_allclose(loaded.encode(TEXTS), _vectors(tm, TEXTS), rtol=1e-4, atol=1e-5)


def test_supervised_jsonl_via_cli_and_errors(tiny_model_dir, tmp_path):
    pairs = tmp_path / "pairs.jsonl"
    rows = [{"query": f"question {i} about {t[:20]}", "positive": t, "negatives": [CORPUS[(i + 3) % 8]]}
            for i, t in enumerate(CORPUS[:8])]
    pairs.write_text("".join(json.dumps(r) + "\n" for r in rows))
    out = tmp_path / "sup"
    args = ["train", "supervised", str(pairs), "--output-dir", str(out), "--model", str(tiny_model_dir),
            "--steps", "2", "--batch-size", "4", "--max-length", "32", "--bf16", "off", "--threads", "1",
            "--quiet", "--json"]
    result = CliRunner().invoke(cli, args)
    assert result.exit_code == 0, result.output
    summary = json.loads(result.output.strip().splitlines()[-1])
    assert summary["steps"] == 2 and summary["recipe"] == "supervised"
    again = CliRunner().invoke(cli, args)  # same output dir without --resume: refused
    assert again.exit_code == 1 and "already holds a training run" in again.output
    pairs.write_text(pairs.read_text() + '{"query": "q"}\n')
    bad = CliRunner().invoke(cli, [*args[:3], "--output-dir", str(tmp_path / "other"), *args[5:]])
    assert bad.exit_code == 1 and "pairs.jsonl:9:" in bad.output


def test_mntp_needs_an_lm_head(tiny_model_dir, corpus_file, tmp_path):
    cfg = MNTPConfig(data=str(corpus_file), output_dir=str(tmp_path / "o"), model=str(tiny_model_dir), steps=1,
                     batch_size=2, max_length=32, **FAST)
    with pytest.raises(TrainingError, match="no LM head"):
        train_mntp(cfg)


def test_resume_of_a_finished_run_is_a_no_op_and_changed_settings_are_refused(causal_dir, corpus_file, tmp_path):
    out = tmp_path / "m"
    base = dict(data=str(corpus_file), output_dir=str(out), model=str(causal_dir), steps=2, batch_size=4,
                max_length=32, **FAST)
    first = train_mntp(MNTPConfig(**base))
    weights = (out / "adapter_model.safetensors").read_bytes()
    again = train_mntp(MNTPConfig(**{**base, "resume": True}))
    assert again["steps"] == first["steps"] == 2
    assert (out / "adapter_model.safetensors").read_bytes() == weights
    with pytest.raises(TrainingError, match="mask_probability"):
        train_mntp(MNTPConfig(**{**base, "resume": True, "mask_probability": 0.5}))


@pytest.mark.slow
def test_real_smollm2_mntp_step_saves_an_adapter_the_encoder_loads(tmp_path):
    """One tiny MNTP step on the real SmolLM2 (tied LM head, '_' mask token), reloaded by the encoder."""
    data = tmp_path / "c.txt"
    data.write_text("\n".join(CORPUS) + "\n", encoding="utf-8")
    out = tmp_path / "mntp"
    cfg = MNTPConfig(data=str(data), output_dir=str(out), model="smollm2-135m-base", steps=1, batch_size=2,
                     max_length=32, learning_rate=1e-3, bf16="off", quiet=True, save_every=0)
    card, tm = train_mntp(cfg, return_model=True)
    assert card["data"]["mask_token"] == "_" and card["first_loss"] > 0
    trained = _vectors(tm, TEXTS[:2])
    loaded = LLM2Vec.from_pretrained("smollm2-135m-base", adapters=[str(out)], dtype="float32", device="cpu")
    np.testing.assert_allclose(loaded.encode(TEXTS[:2]), trained, rtol=1e-3, atol=1e-4)
