"""The native engine against transformers, family by family (tiny random models, hidden 64, 2 layers)."""
from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
import torch

from llm2vec_rag import LLM2Vec
from llm2vec_rag.bidirectional import attention_report, set_bidirectional
from llm2vec_rag.errors import LLM2VecError
from llm2vec_rag.native import NATIVE_FAMILIES, NativeDecoder, load_native, native_reason

from conftest import build_tiny_tokenizer, write_tiny_model_dir

TEXTS = ["a cell is the unit of life", "proteins fold", "the quick brown fox jumps over the lazy dog again and again"]


@pytest.fixture(scope="module")
def native_dirs(tmp_path_factory):
    """One tiny checkpoint per native family; Mistral without a sliding window (with one it is not native)."""
    import transformers

    from tiny_models import COMMON, TINY_CONFIGS

    dirs = {}
    for mtype in NATIVE_FAMILIES:
        cls_name, extra = TINY_CONFIGS[mtype]
        extra = {**extra, "sliding_window": None} if mtype == "mistral" else extra
        config = getattr(transformers, cls_name)(**{**COMMON, **extra})
        if mtype == "llama":
            config.attention_bias = True  # bias paths exercised too
            config.mlp_bias = True
        path = tmp_path_factory.mktemp(f"native-{mtype}")
        torch.manual_seed(3)
        model = transformers.AutoModelForCausalLM.from_config(config)  # "model." prefix + lm_head in the file
        with torch.no_grad():
            for p in model.parameters():  # non-trivial norms and biases
                p.add_(torch.randn_like(p) * 0.02)
        model.save_pretrained(path)
        build_tiny_tokenizer().save_pretrained(path)
        dirs[mtype] = path
    return dirs


def _inputs(pad: int = 0):
    ids = torch.tensor([[pad, pad, 5, 9, 17, 33], [7, 8, 9, 10, 11, 12], [pad, pad, pad, pad, 40, 41]])
    mask = (torch.arange(6)[None, :] >= torch.tensor([[2], [0], [4]])).long()
    positions = (mask.cumsum(-1) - 1).clamp(min=0)
    return ids, mask, positions


@pytest.mark.parametrize("mtype", sorted(NATIVE_FAMILIES))
@pytest.mark.parametrize("bidirectional", [True, False])
def test_native_matches_transformers(native_dirs, mtype, bidirectional):
    from transformers import AutoModel

    path = native_dirs[mtype]
    assert native_reason(path) is None
    ref = AutoModel.from_pretrained(path, dtype=torch.float32, attn_implementation="sdpa").eval()
    mine = load_native(path, torch.float32)
    set_bidirectional(ref, bidirectional)
    set_bidirectional(mine, bidirectional)
    ids, mask, positions = _inputs()
    with torch.inference_mode():
        want = ref(input_ids=ids, attention_mask=mask, position_ids=positions).last_hidden_state
        got = mine(input_ids=ids, attention_mask=mask, position_ids=positions).last_hidden_state
    real = mask.bool()
    torch.testing.assert_close(got[real], want[real], atol=2e-5, rtol=1e-4)
    assert torch.isfinite(got).all()  # left-pad rows never fully masked, even causal
    # batch size 1, no padding (the case where SDPA's own causal flag used to win)
    with torch.inference_mode():
        one = ids[1:2]
        torch.testing.assert_close(mine(input_ids=one).last_hidden_state, ref(input_ids=one).last_hidden_state,
                                   atol=2e-5, rtol=1e-4)
    report = attention_report(mine)
    assert report == {"batch1": bidirectional, "padded": bidirectional}


@pytest.mark.parametrize("mtype", sorted(NATIVE_FAMILIES))
def test_encoder_picks_native_and_matches(native_dirs, mtype):
    path = native_dirs[mtype]
    native = LLM2Vec.from_pretrained(str(path), dtype="float32")
    hf = LLM2Vec.from_pretrained(str(path), dtype="float32", engine="transformers")
    assert native.engine == "native" and isinstance(native.model, NativeDecoder)
    assert hf.engine == "transformers" and not isinstance(hf.model, NativeDecoder)
    assert native.fingerprint() == hf.fingerprint()  # an index built by one engine is searched by the other
    a, b = native.encode_queries(TEXTS), hf.encode_queries(TEXTS)
    cos = torch.nn.functional.cosine_similarity(torch.tensor(a), torch.tensor(b))
    assert cos.min() > 0.99999
    native.check_bidirectional()


def test_falls_back_where_not_exact(tiny_family_dirs, native_dirs, tmp_path):
    # families outside the table, and sliding windows, go through transformers
    assert LLM2Vec.from_pretrained(str(tiny_family_dirs["gemma"]), dtype="float32").engine == "transformers"
    assert "sliding" in native_reason(tiny_family_dirs["mistral"])
    assert LLM2Vec.from_pretrained(str(tiny_family_dirs["mistral"]), dtype="float32").engine == "transformers"
    # rope scaling is not implemented natively
    scaled = write_tiny_model_dir(tmp_path / "scaled")
    import json

    cfg = json.loads((scaled / "config.json").read_text())
    cfg["rope_parameters"] = {"rope_type": "linear", "factor": 2.0, "rope_theta": 10000.0}
    (scaled / "config.json").write_text(json.dumps(cfg))
    assert native_reason(scaled) == "rope scaling"
    with pytest.raises(LLM2VecError, match="rope scaling"):
        LLM2Vec.from_pretrained(str(scaled), engine="native")
    with pytest.raises(LLM2VecError, match="unknown engine"):
        LLM2Vec.from_pretrained(str(native_dirs["llama"]), engine="onnx")


def test_engine_env_and_save_round_trip(native_dirs, tmp_path, monkeypatch):
    path = native_dirs["qwen3"]
    monkeypatch.setenv("LLM2VEC_RAG_ENGINE", "transformers")
    assert LLM2Vec.from_pretrained(str(path), dtype="float32").engine == "transformers"
    monkeypatch.delenv("LLM2VEC_RAG_ENGINE")
    enc = LLM2Vec.from_pretrained(str(path), dtype="float32")
    saved = enc.save(tmp_path / "saved")
    for engine in ("native", "transformers"):  # what the native engine saves, both engines reload
        again = LLM2Vec.from_pretrained(str(saved), engine=engine, dtype="float32")
        assert again.fingerprint() == enc.fingerprint()
        torch.testing.assert_close(torch.tensor(again.encode(TEXTS)), torch.tensor(enc.encode(TEXTS)))


def test_native_load_does_not_import_transformers_models(native_dirs):
    """The start-up win: no transformers modeling code, no torch._dynamo on the native path."""
    code = (
        "import sys; from llm2vec_rag import LLM2Vec; "
        f"m = LLM2Vec.from_pretrained({str(native_dirs['llama'])!r}); m.encode(['x']); "
        "heavy = [k for k in ('torch._dynamo', 'transformers', 'peft') if k in sys.modules]; "
        "print(m.engine, heavy)"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "native []"


TOKENIZER_TEXTS = [
    "", " ", "a cell is the unit of life", "Ünïcödé — naïve café 🙂 東京", "tabs\tand\nnewlines  twice",
    "Given a scientific claim, retrieve documents: 0-dimensional biomaterials show inductive properties.",
    "word " * 300,
]


def check_light_tokenizer(sources, tmp_path):
    """LightTokenizer answers every call as transformers' fast tokenizer does (also run on SmolLM2's)."""
    from transformers import PreTrainedTokenizerFast

    from llm2vec_rag.light_tokenizer import LightTokenizer

    for source in map(Path, sources):
        light, full = LightTokenizer(source), PreTrainedTokenizerFast.from_pretrained(source)
        for attr in ("bos_token", "eos_token", "pad_token", "bos_token_id", "eos_token_id", "pad_token_id"):
            assert getattr(light, attr) == getattr(full, attr), attr
        assert len(light) == len(full)
        for kwargs in ({}, {"add_special_tokens": False},
                       {"truncation": True, "max_length": 7, "return_offsets_mapping": True,
                        "return_special_tokens_mask": True}):
            want = full(TOKENIZER_TEXTS, **kwargs)
            got = light(TOKENIZER_TEXTS, **kwargs)
            for key, value in got.items():
                assert [list(map(tuple, v)) if key == "offset_mapping" else list(v) for v in value] == \
                    [list(map(tuple, v)) if key == "offset_mapping" else list(v) for v in want[key]], key
        assert light("one text")["input_ids"] == full("one text")["input_ids"]
        ids = full(TOKENIZER_TEXTS[3])["input_ids"]
        for skip in (False, True):
            assert light.decode(ids, skip_special_tokens=skip) == full.decode(ids, skip_special_tokens=skip)
        assert light.convert_ids_to_tokens(ids) == full.convert_ids_to_tokens(ids)
        assert light.get_vocab() == full.get_vocab()
        light.save_pretrained(tmp_path / source.name)  # transformers reads back what it saves
        again = PreTrainedTokenizerFast.from_pretrained(tmp_path / source.name)
        assert again(TOKENIZER_TEXTS)["input_ids"] == full(TOKENIZER_TEXTS)["input_ids"]
        assert again.pad_token == light.pad_token


def test_light_tokenizer_equals_transformers(native_dirs, tmp_path):
    check_light_tokenizer([native_dirs["llama"]], tmp_path)


def test_native_encoder_uses_light_tokenizer(native_dirs):
    from llm2vec_rag.light_tokenizer import LightTokenizer

    native = LLM2Vec.from_pretrained(str(native_dirs["llama"]), dtype="float32")
    hf = LLM2Vec.from_pretrained(str(native_dirs["llama"]), dtype="float32", engine="transformers")
    assert isinstance(native.tokenizer, LightTokenizer) and not isinstance(hf.tokenizer, LightTokenizer)
    from llm2vec_rag.instructions import tokenize_all

    items = [["Given a claim, retrieve:", t] for t in TOKENIZER_TEXTS] + TOKENIZER_TEXTS
    assert tokenize_all(native.tokenizer, items, 64) == tokenize_all(hf.tokenizer, items, 64)


def _padded_batch(vocab: int = 60):
    torch.manual_seed(11)
    ids = torch.randint(3, vocab, (3, 9))
    mask = torch.ones(3, 9, dtype=torch.long)
    mask[0, :4] = 0  # left padding, as the encoder pads
    mask[2, 7:] = 0  # right padding, as a user's tokenizer may pad
    return ids, mask


@pytest.mark.parametrize("mtype", sorted(NATIVE_FAMILIES))
def test_cpu_attention_matches_sdpa(native_dirs, mtype, monkeypatch):
    """Dense (short batches) and span (long ones) attention both agree with SDPA, padding included."""
    import llm2vec_rag.native as native

    model = load_native(native_dirs[mtype], torch.float32)
    set_bidirectional(model, True)
    ids, mask = _padded_batch()
    real = mask.bool()
    calls: dict[str, list[int]] = {"span": [], "dense": []}
    for kind in calls:
        original = getattr(native, f"_{kind}_attention")
        monkeypatch.setattr(native, f"_{kind}_attention",
                            lambda *a, _k=kind, _f=original: calls[_k].append(1) or _f(*a))

    def run(m=mask):
        with torch.inference_mode():
            return model(input_ids=ids, attention_mask=m).last_hidden_state

    model.use_cpu_attention = False
    want = run()
    assert not calls["span"] and not calls["dense"]
    model.use_cpu_attention = True
    got = run()  # 9 tokens < SPAN_MIN_LENGTH: dense
    assert len(calls["dense"]) == model.config.num_hidden_layers and not calls["span"]
    torch.testing.assert_close(got[real], want[real], atol=2e-5, rtol=1e-4)
    monkeypatch.setattr(native, "SPAN_MIN_LENGTH", 4)
    monkeypatch.setattr(native, "SPAN_QUERY_CHUNK", 2)  # several query blocks per text
    calls["dense"].clear()
    got = run()
    assert len(calls["span"]) == model.config.num_hidden_layers and not calls["dense"]
    torch.testing.assert_close(got[real], want[real], atol=2e-5, rtol=1e-4)
    # a mask whose tokens are not one run per row (a hole): long batches go through SDPA, short ones dense
    holed = mask.clone()
    holed[1, 4] = 0
    model.use_cpu_attention = False
    want_holed = run(holed)
    model.use_cpu_attention = True
    calls["span"].clear()
    got = run(holed)
    assert not calls["span"] and not calls["dense"]
    torch.testing.assert_close(got[holed.bool()], want_holed[holed.bool()], atol=2e-5, rtol=1e-4)
    monkeypatch.setattr(native, "SPAN_MIN_LENGTH", 192)
    got = run(holed)
    assert calls["dense"]
    torch.testing.assert_close(got[holed.bool()], want_holed[holed.bool()], atol=2e-5, rtol=1e-4)
    # a row with no real token at all (an empty text) stays finite in dense attention
    empty = mask.clone()
    empty[0] = 0
    assert torch.isfinite(run(empty)).all()
    # with gradients (training) or causal attention, SDPA as before
    calls["dense"].clear()
    model(input_ids=ids, attention_mask=mask)
    set_bidirectional(model, False)
    run()
    assert not calls["span"] and not calls["dense"]


def test_spans_of_masks():
    from llm2vec_rag.native import _spans

    keep = torch.tensor([[0, 0, 1, 1], [1, 1, 1, 1], [1, 1, 0, 0], [0, 0, 0, 0]], dtype=torch.bool)
    assert _spans(keep) == [(2, 4), (0, 4), (0, 2), (0, 0)]
    assert _spans(torch.tensor([[1, 0, 1, 1]], dtype=torch.bool)) is None


@pytest.mark.parametrize("mtype", sorted(NATIVE_FAMILIES))
@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
def test_prepacked_weights_match_plain_linear(native_dirs, mtype, dtype):
    import llm2vec_rag.native as native

    if dtype not in native._prepack_dtypes():
        pytest.skip(f"oneDNN cannot prepack {dtype} on this CPU")
    model = load_native(native_dirs[mtype], dtype)
    set_bidirectional(model, True)
    linears = [m for m in model.modules() if isinstance(m, native.Linear)]
    assert model.use_prepacked_weights and linears
    ids, mask = _padded_batch()
    real = mask.bool()
    with torch.inference_mode():
        model.use_prepacked_weights = False
        want = model(input_ids=ids, attention_mask=mask).last_hidden_state
        assert not any(m in native._PACKED for m in linears)
        model.use_prepacked_weights = True
        got = model(input_ids=ids, attention_mask=mask).last_hidden_state
    assert all(m in native._PACKED for m in linears)  # every projection went through its packed copy
    tol = {"atol": 2e-5, "rtol": 1e-4} if dtype == torch.float32 else {"atol": 0.0, "rtol": 0.0}
    torch.testing.assert_close(got[real], want[real], **tol)  # bf16: bit-identical to F.linear
    # an in-place change of a weight (a merged adapter, a user edit) repacks it
    with torch.no_grad():
        linears[0].weight.mul_(2)
    x = torch.randn(3, linears[0].in_features, dtype=dtype)
    with torch.inference_mode():
        packed_out = linears[0](x)
    torch.testing.assert_close(packed_out, torch.nn.functional.linear(x, linears[0].weight, linears[0].bias), **tol)


def test_prepacked_weights_stay_out_of_training_and_big_models(native_dirs, monkeypatch):
    import llm2vec_rag.native as native

    model = load_native(native_dirs["llama"], torch.float32)
    linears = [m for m in model.modules() if isinstance(m, native.Linear)]
    model.use_prepacked_weights = False  # drops the packed copies
    model.use_prepacked_weights = True
    out = model(input_ids=torch.tensor([[5, 9, 17]])).last_hidden_state  # grad on: F.linear, gradients flow
    assert not any(m in native._PACKED for m in linears)
    out.sum().backward()
    assert linears[0].weight.grad is not None
    monkeypatch.setattr(native, "PREPACK_MAX_BYTES", 1000)
    model.prepack_by_default()
    assert not model.use_prepacked_weights  # a second copy of a model this size would pass the cap


def test_mmap_threshold_tuning_is_optional(monkeypatch):
    import llm2vec_rag.native as native

    native._fix_mmap_threshold.cache_clear()
    monkeypatch.setenv("LLM2VEC_RAG_MALLOC_TUNING", "0")
    assert native._fix_mmap_threshold() is False
    native._fix_mmap_threshold.cache_clear()
    monkeypatch.delenv("LLM2VEC_RAG_MALLOC_TUNING")
    import platform
    expected = sys.platform.startswith("linux") and platform.libc_ver()[0] == "glibc"
    assert native._fix_mmap_threshold() is expected
