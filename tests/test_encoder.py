"""The encoder on tiny random decoders: shapes, order, pooling over text tokens, bad input."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from llm2vec_rag import LLM2Vec
from llm2vec_rag.errors import LLM2VecError
from llm2vec_rag.runtime import resolve_dtype

from conftest import CORPUS


def cos(a, b):
    return float(np.dot(a, b) / (np.linalg.norm(a) * np.linalg.norm(b)))


def test_shapes_and_types(tiny_encoder):
    dim = tiny_encoder.dim
    assert dim == 64
    assert tiny_encoder.encode(["a", "b c"]).shape == (2, dim)
    assert tiny_encoder.encode("a single text").shape == (dim,)
    assert tiny_encoder.encode([]).shape == (0, dim)
    t = tiny_encoder.encode(["x"], convert_to_tensor=True)
    assert isinstance(t, torch.Tensor) and t.shape == (1, dim)
    assert tiny_encoder.encode(["x"]).dtype == np.float32


def test_empty_string_gives_a_finite_vector(tiny_encoder):
    v = tiny_encoder.encode("")
    assert v.shape == (tiny_encoder.dim,) and np.isfinite(v).all() and np.abs(v).sum() > 0


def test_non_string_is_type_error_naming_position(tiny_encoder):
    with pytest.raises(TypeError, match="input 2 must be a string"):
        tiny_encoder.encode(["ok", "fine", 3])


def test_long_text_is_truncated_not_a_crash(tiny_encoder):
    long = " ".join(CORPUS * 20)
    v = tiny_encoder.encode([long, "short"])
    assert np.isfinite(v).all()
    # truncation: the long text equals its own first max_length tokens
    ids = tiny_encoder.tokenizer(long, add_special_tokens=False)["input_ids"][: tiny_encoder.max_length]
    head = tiny_encoder.tokenizer.decode(ids)
    assert cos(v[0], tiny_encoder.encode(head)) > 0.9999


def test_batches_are_sorted_but_output_keeps_input_order(tiny_encoder):
    texts = CORPUS[:8] + ["tiny", "a much longer text about cells and proteins and rivers and the sea"]
    together = tiny_encoder.encode(texts, batch_size=3)
    for i, text in enumerate(texts):
        assert cos(together[i], tiny_encoder.encode(text)) > 0.9999, i


def test_left_padding_does_not_change_vectors(tiny_encoder):
    short = "Cells"
    alone = tiny_encoder.encode([short])[0]
    padded = tiny_encoder.encode([short, CORPUS[0] + " " + CORPUS[1]], batch_size=2)[0]
    assert np.allclose(alone, padded, atol=1e-4)


def test_instruction_is_seen_but_not_pooled(tiny_encoder):
    text = "Cells are the basic unit of life."
    instr = "Given a claim, retrieve documents:"
    with_instr = tiny_encoder.encode([[instr, text]])[0]
    plain = tiny_encoder.encode([text])[0]
    assert not np.allclose(with_instr, plain, atol=1e-4), "bidirectional text tokens must see the instruction"
    # independent computation: run the joined sequence, average only the text tokens
    tok = tiny_encoder.tokenizer
    joined = instr + " " + text
    enc = tok(joined, return_offsets_mapping=True)
    start = len(instr) + 1
    keep = [i for i, (s, e) in enumerate(enc["offset_mapping"]) if e > start]
    ids = torch.tensor([enc["input_ids"]])
    with torch.inference_mode():
        hidden = tiny_encoder.model(input_ids=ids, attention_mask=torch.ones_like(ids)).last_hidden_state[0]
    expected = hidden[keep].mean(0).float().numpy()
    assert np.allclose(with_instr, expected, atol=1e-5)


def test_encode_queries_uses_default_instruction_and_documents_none(tiny_encoder):
    q = "what is a cell?"
    assert np.allclose(tiny_encoder.encode_queries([q])[0],
                       tiny_encoder.encode([[tiny_encoder.query_instruction, q]])[0], atol=1e-6)
    assert np.allclose(tiny_encoder.encode_queries([q], instruction="Find:")[0],
                       tiny_encoder.encode([["Find:", q]])[0], atol=1e-6)
    assert np.allclose(tiny_encoder.encode_documents([q])[0], tiny_encoder.encode([q])[0], atol=1e-6)
    assert tiny_encoder.encode_queries(q).shape == (tiny_encoder.dim,)
    assert tiny_encoder.encode_documents(q, normalize_embeddings=True).shape == (tiny_encoder.dim,)


def test_normalize(tiny_encoder):
    v = tiny_encoder.encode(CORPUS[:3], normalize_embeddings=True)
    assert np.allclose(np.linalg.norm(v, axis=1), 1.0, atol=1e-5)


def test_progress_bar_only_for_long_inputs(tiny_encoder, capsys):
    tiny_encoder.encode(["a"] * 3)
    assert "Encoding" not in capsys.readouterr().err
    tiny_encoder.encode(["a"] * 3, show_progress_bar=True)
    assert "Encoding" in capsys.readouterr().err


@pytest.mark.parametrize("mode", ["mean", "weighted_mean", "eos_token", "last_token", "bos_token"])
def test_every_pooling_mode_runs_and_differs(tiny_model_dir, mode):
    enc = LLM2Vec.from_pretrained(str(tiny_model_dir), pooling_mode=mode, dtype="float32")
    v = enc.encode(CORPUS[:4])
    assert v.shape == (4, 64) and np.isfinite(v).all()
    assert not np.allclose(v[0], v[1])


def test_bidirectional_flag_changes_vectors_and_self_check(tiny_model_dir):
    bi = LLM2Vec.from_pretrained(str(tiny_model_dir), dtype="float32")
    causal = LLM2Vec.from_pretrained(str(tiny_model_dir), dtype="float32", enable_bidirectional=False)
    assert bi.check_bidirectional() == {"batch1": True, "padded": True}
    assert causal.check_bidirectional() == {"batch1": False, "padded": False}
    assert not np.allclose(bi.encode(CORPUS[0]), causal.encode(CORPUS[0]), atol=1e-4)


def test_families_load_and_encode(tiny_family_dirs):
    for model_type, path in tiny_family_dirs.items():
        enc = LLM2Vec.from_pretrained(str(path), dtype="float32")
        assert enc.check_bidirectional()["padded"], model_type
        assert enc.encode(["a b", "c"]).shape == (2, 64), model_type


def test_bad_settings_are_clear_errors(tiny_model_dir, tiny_encoder):
    with pytest.raises(LLM2VecError, match="unknown pooling_mode 'max'"):
        LLM2Vec.from_pretrained(str(tiny_model_dir), pooling_mode="max")
    with pytest.raises(LLM2VecError, match="unknown dtype"):
        LLM2Vec.from_pretrained(str(tiny_model_dir), dtype="int3")
    with pytest.raises(LLM2VecError, match="batch_size"):
        tiny_encoder.encode(["a"], batch_size=0)


def test_dtype_auto_follows_the_host_choice(monkeypatch):
    # the decision itself (AMX, calibration, cache) is tested in test_dtype_choice.py
    monkeypatch.setenv("LLM2VEC_RAG_DTYPE", "bfloat16")
    assert resolve_dtype("auto", torch.device("cpu")) == torch.bfloat16
    monkeypatch.setenv("LLM2VEC_RAG_DTYPE", "float32")
    assert resolve_dtype("auto", torch.device("cpu")) == torch.float32
    assert resolve_dtype("bf16", torch.device("cpu")) == torch.bfloat16


def test_bf16_vectors_track_fp32(tiny_model_dir):
    fp32 = LLM2Vec.from_pretrained(str(tiny_model_dir), dtype="float32").encode(CORPUS[:4])
    bf16 = LLM2Vec.from_pretrained(str(tiny_model_dir), dtype="bfloat16").encode(CORPUS[:4])
    assert min(cos(a, b) for a, b in zip(fp32, bf16)) > 0.99


def test_fingerprint_stable_and_sensitive(tiny_model_dir, tmp_path):
    from conftest import write_tiny_model_dir

    a = LLM2Vec.from_pretrained(str(tiny_model_dir), dtype="float32")
    b = LLM2Vec.from_pretrained(str(tiny_model_dir), dtype="bfloat16")
    other = LLM2Vec.from_pretrained(str(write_tiny_model_dir(tmp_path / "m", seed=1)), dtype="float32")
    pooled = LLM2Vec.from_pretrained(str(tiny_model_dir), dtype="float32", pooling_mode="last_token")
    assert a.fingerprint() == b.fingerprint()
    assert len({a.fingerprint(), other.fingerprint(), pooled.fingerprint()}) == 3


def test_plan_batches_packs_by_token_budget():
    from llm2vec_rag.encoder import plan_batches

    lengths = [10, 100, 12, 50, 11, 300]
    batches = plan_batches(lengths, max_tokens=120)
    assert sorted(i for b in batches for i in b) == list(range(6))
    assert batches[0] == [5]  # longer than the budget: alone
    for b in batches:
        assert len(b) == 1 or len(b) * max(lengths[i] for i in b) <= 120
    assert [lengths[b[0]] for b in batches] == sorted((lengths[b[0]] for b in batches), reverse=True)
    assert len(plan_batches([5] * 100, max_tokens=100)) == 5  # 20 short texts share a batch


def test_token_budget_does_not_change_vectors(tiny_encoder):
    texts = CORPUS[:10] + ["x"]
    a = tiny_encoder.encode(texts, max_batch_tokens=16)
    b = tiny_encoder.encode(texts, max_batch_tokens=100000)
    assert np.allclose(a, b, atol=1e-4)


def test_default_token_budget_is_small_on_cpu(tiny_encoder, monkeypatch):
    """CPU batches default to batch_size x 16 padded tokens (cache-sized; measured faster), GPU x 256."""
    import llm2vec_rag.encoder as encoder_module

    seen = []
    real = encoder_module.plan_batches
    monkeypatch.setattr(encoder_module, "plan_batches", lambda lengths, budget: seen.append(budget) or real(lengths, budget))
    tiny_encoder.encode(CORPUS[:4])
    tiny_encoder.encode(CORPUS[:4], batch_size=8)
    tiny_encoder.encode(CORPUS[:4], max_batch_tokens=999)
    assert seen == [32 * 16, 8 * 16, 999]
    assert encoder_module.TOKENS_PER_BATCH_SLOT["default"] == 256


def test_generic_tokenizer_is_loaded_directly_with_the_same_tokens(tiny_model_dir, tmp_path):
    """Start-up shortcut: a saved generic fast tokenizer skips AutoTokenizer, and tokenizes identically."""
    import json
    import shutil

    from transformers import AutoTokenizer

    from llm2vec_rag.loading import GENERIC_TOKENIZERS, load_tokenizer as _load_tokenizer

    config = json.loads((tiny_model_dir / "tokenizer_config.json").read_text())
    assert config.get("tokenizer_class") in GENERIC_TOKENIZERS  # what save_pretrained writes for these
    direct, auto = _load_tokenizer(str(tiny_model_dir)), AutoTokenizer.from_pretrained(str(tiny_model_dir))
    for text in ["Given a claim, retrieve documents: cells divide.", "héllo </s> 12", ""]:
        a, b = direct(text, return_offsets_mapping=True), auto(text, return_offsets_mapping=True)
        assert a["input_ids"] == b["input_ids"] and a["offset_mapping"] == b["offset_mapping"]
    assert (direct.pad_token, direct.eos_token, direct.bos_token) == (auto.pad_token, auto.eos_token, auto.bos_token)
    other = tmp_path / "other"
    shutil.copytree(tiny_model_dir, other)
    (other / "tokenizer_config.json").write_text(json.dumps({**config, "tokenizer_class": "LlamaTokenizerFast"}))
    assert type(_load_tokenizer(str(other))).__name__ == type(AutoTokenizer.from_pretrained(str(other))).__name__
