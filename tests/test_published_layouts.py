"""Published LLM2Vec checkpoints and llm2vec 0.2.3 code: every route gives the right vectors or a clear error.

A tiny random Llama laid out like the McGill-NLP repositories: ``-mntp`` holds the base's
``config.json`` and tokenizer beside a LoRA adapter whose ``adapter_config.json`` names the base;
``-supervised`` is a second adapter trained on base + MNTP. The right vectors are those of the
explicit route ``from_pretrained(base, adapters=[mntp, supervised])`` (the stacking itself is
tested in test_save_load.py; the reference's own vectors in benchmarks/parity_reference.py).
"""
from __future__ import annotations

import json
import shutil
import time

import numpy as np
import pytest
import torch

from llm2vec_rag import LLM2Vec
from llm2vec_rag.errors import LLM2VecError, ModelNotFoundError

from conftest import CORPUS, write_tiny_model_dir

TEXTS = CORPUS[:3] + [["Given a claim, retrieve documents:", "cells divide"]]
HUB_MNTP = "McGill-NLP/LLM2Vec-Tiny-mntp"
COMMIT = "0123456789abcdef0123456789abcdef01234567"


def make_lora(model, out, seed, targets=("q_proj", "v_proj", "up_proj")):
    from peft import LoraConfig, get_peft_model

    torch.manual_seed(seed)
    peft_model = get_peft_model(model, LoraConfig(r=4, lora_alpha=8, target_modules=list(targets)))
    with torch.no_grad():
        for name, p in peft_model.named_parameters():
            if "lora_B" in name:
                p.normal_(0, 0.5)
    peft_model.save_pretrained(str(out))
    return out


def set_base(adapter_dir, base):
    cfg_path = adapter_dir / "adapter_config.json"
    cfg = json.loads(cfg_path.read_text())
    cfg["base_model_name_or_path"] = str(base)
    cfg_path.write_text(json.dumps(cfg))


@pytest.fixture(scope="module")
def published(tmp_path_factory):
    """base/, -mntp/ (config + tokenizer + adapter naming base), -supervised/ (adapter naming the mntp id)."""
    from peft import PeftModel
    from transformers import AutoModel

    root = tmp_path_factory.mktemp("published")
    base = write_tiny_model_dir(root / "base")
    mntp = root / "LLM2Vec-Tiny-mntp"
    make_lora(AutoModel.from_pretrained(str(base)), mntp, seed=1)
    set_base(mntp, base)
    for name in ("config.json", "tokenizer.json", "tokenizer_config.json"):
        shutil.copy(base / name, mntp / name)
    merged = PeftModel.from_pretrained(AutoModel.from_pretrained(str(base)), str(mntp)).merge_and_unload()
    sup = root / "LLM2Vec-Tiny-mntp-supervised"
    make_lora(merged, sup, seed=2, targets=("k_proj", "o_proj", "down_proj"))
    set_base(sup, HUB_MNTP)
    return {"root": root, "base": base, "mntp": mntp, "sup": sup}


@pytest.fixture(scope="module")
def expected(published):
    def enc(*adapters):
        return LLM2Vec.from_pretrained(str(published["base"]), dtype="float32",
                                       adapters=[str(a) for a in adapters]).encode(TEXTS)

    return {"mntp": enc(published["mntp"]), "both": enc(published["mntp"], published["sup"]),
            "sup_only": enc(published["sup"]), "base": enc()}


def close(a, b, atol=1e-5):
    return np.allclose(np.asarray(a), np.asarray(b), atol=atol)


def test_the_fixture_adapters_matter(expected):
    assert not close(expected["mntp"], expected["base"], 1e-3)
    assert not close(expected["both"], expected["mntp"], 1e-3)
    assert not close(expected["both"], expected["sup_only"], 1e-3)


def test_mntp_dir_loads_base_plus_its_adapter(published, expected):
    enc = LLM2Vec.from_pretrained(str(published["mntp"]), dtype="float32")
    assert close(enc.encode(TEXTS), expected["mntp"])


def test_mntp_dir_with_adapters_stacks_them(published, expected):
    enc = LLM2Vec.from_pretrained(str(published["mntp"]), dtype="float32", adapters=[str(published["sup"])])
    assert close(enc.encode(TEXTS), expected["both"])
    merged = LLM2Vec.from_pretrained(str(published["mntp"]), dtype="float32", adapters=[str(published["sup"])],
                                     merge_adapters=True)
    assert not hasattr(merged.model, "peft_config") and close(merged.encode(TEXTS), expected["both"], 1e-4)


def test_base_weights_copied_beside_the_adapter_still_apply_it(published, expected, tmp_path):
    """The natural workaround (copy the base weights into -mntp) must not drop MNTP nor let supervised replace it."""
    copied = tmp_path / "mntp-with-weights"
    shutil.copytree(published["mntp"], copied)
    shutil.copy(published["base"] / "model.safetensors", copied / "model.safetensors")
    set_base(copied, "McGill-NLP/not-needed-when-weights-are-here")
    assert close(LLM2Vec.from_pretrained(str(copied), dtype="float32").encode(TEXTS), expected["mntp"])
    enc = LLM2Vec.from_pretrained(str(copied), dtype="float32", adapters=[str(published["sup"])])
    assert close(enc.encode(TEXTS), expected["both"])


def test_reference_keywords_and_positional_order(published, expected):
    mntp, sup = str(published["mntp"]), str(published["sup"])
    by_keyword = LLM2Vec.from_pretrained(base_model_name_or_path=mntp, peft_model_name_or_path=sup,
                                         torch_dtype=torch.float32, device_map="cpu", doc_max_length=10**6)
    out = by_keyword.encode(TEXTS)
    assert isinstance(out, torch.Tensor), "reference-style calls return tensors, as llm2vec does"
    assert close(out, expected["both"])
    positional = LLM2Vec.from_pretrained(mntp, sup, True, True, doc_max_length=10**6)  # (base, peft, merge_peft, bidi)
    assert not hasattr(positional.model, "peft_config"), "third positional is merge_peft"
    assert next(positional.model.parameters()).dtype == torch.float32, "the reference's default dtype"
    assert close(positional.encode(TEXTS), expected["both"], 1e-4)
    assert close(positional.encode(TEXTS, device="cpu", convert_to_numpy=True), expected["both"], 1e-4)
    bf16 = LLM2Vec.from_pretrained(mntp, peft_model_name_or_path=sup, torch_dtype=torch.bfloat16)
    assert next(bf16.model.parameters()).dtype == torch.bfloat16
    causal = LLM2Vec.from_pretrained(mntp, peft_model_name_or_path=sup, enable_bidirectional=False)
    assert causal.check_bidirectional() == {"batch1": False, "padded": False}
    # a bool third positional is merge_peft even with no peft adapter (never max_length=1)
    no_peft = LLM2Vec.from_pretrained(mntp, None, True, doc_max_length=10**6)
    assert no_peft.max_length == 512 and no_peft.load_spec["merge_adapters"] is True
    assert close(no_peft.encode(TEXTS), expected["mntp"])
    with pytest.raises(LLM2VecError, match="merge_peft given twice"):
        LLM2Vec.from_pretrained(mntp, None, True, merge_peft=False)
    off = LLM2Vec.from_pretrained(mntp, None, False, False)  # (base, peft, merge_peft, enable_bidirectional)
    assert (off.max_length, off.enable_bidirectional) == (512, False)
    # the existing API is unchanged: numpy out, second positional still a pooling mode
    plain = LLM2Vec.from_pretrained(mntp, "weighted_mean", dtype="float32")
    assert plain.pooling_mode == "weighted_mean" and isinstance(plain.encode(TEXTS), np.ndarray)


def test_bad_reference_keywords_are_clear_errors(published):
    mntp = str(published["mntp"])
    with pytest.raises(TypeError, match="unexpected keyword arguments \\['frobnicate'\\]"):
        LLM2Vec.from_pretrained(mntp, frobnicate=True)
    with pytest.raises(LLM2VecError, match="device_map dicts"):
        LLM2Vec.from_pretrained(mntp, device_map={"": 0})
    with pytest.raises(LLM2VecError, match="disagree"):
        LLM2Vec.from_pretrained(mntp, dtype="bfloat16", torch_dtype=torch.float32)
    with pytest.raises(LLM2VecError, match="not both"):
        LLM2Vec.from_pretrained(mntp, base_model_name_or_path=mntp)


def test_attn_implementation_goes_to_transformers(published, expected):
    enc = LLM2Vec.from_pretrained(str(published["mntp"]), peft_model_name_or_path=str(published["sup"]),
                                  attn_implementation="eager", doc_max_length=10**6)
    assert enc.engine == "transformers" and enc.model.config._attn_implementation == "eager"
    assert close(enc.encode(TEXTS), expected["both"], 1e-4)


def test_llm2vec_config_in_the_adapter_dir_is_read(published, tmp_path):
    sup = tmp_path / "sup-with-config"
    shutil.copytree(published["sup"], sup)
    (sup / "llm2vec_config.json").write_text(json.dumps(
        {"pooling_mode": "weighted_mean", "max_length": 32, "doc_max_length": 20, "skip_instruction": False}))
    enc = LLM2Vec.from_pretrained(str(published["mntp"]), peft_model_name_or_path=str(sup))
    assert (enc.pooling_mode, enc.max_length, enc.doc_max_length, enc.skip_instruction) == (
        "weighted_mean", 32, 20, False)
    explicit = LLM2Vec.from_pretrained(str(published["mntp"]), peft_model_name_or_path=str(sup), pooling_mode="mean")
    assert explicit.pooling_mode == "mean", "an explicit argument beats the file"


def test_with_an_adapter_the_model_folders_llm2vec_config_is_not_read(published, tmp_path):
    """llm2vec 0.2.3 reads llm2vec_config.json from the peft directory when given one, else from the model's."""
    mntp = tmp_path / "mntp-with-config"
    shutil.copytree(published["mntp"], mntp)
    (mntp / "llm2vec_config.json").write_text(json.dumps(
        {"pooling_mode": "weighted_mean", "max_length": 32, "doc_max_length": 20, "skip_instruction": False}))
    alone = LLM2Vec.from_pretrained(str(mntp))
    assert (alone.pooling_mode, alone.max_length, alone.doc_max_length, alone.skip_instruction) == (
        "weighted_mean", 32, 20, False)
    with_sup = LLM2Vec.from_pretrained(str(mntp), peft_model_name_or_path=str(published["sup"]))
    assert (with_sup.pooling_mode, with_sup.max_length, with_sup.doc_max_length, with_sup.skip_instruction) == (
        "mean", 512, 400, True), "the reference's defaults: the supervised folder has no llm2vec_config.json"
    stacked = LLM2Vec.from_pretrained(str(mntp), adapters=[str(published["sup"])])
    assert (stacked.pooling_mode, stacked.max_length) == ("mean", 512)


def test_missing_base_is_a_clear_error_naming_the_local_route(published, tmp_path):
    lost = tmp_path / "mntp-lost-base"
    shutil.copytree(published["mntp"], lost)
    set_base(lost, tmp_path / "moved-away")
    with pytest.raises(ModelNotFoundError, match="base model .*moved-away.* is not found.*adapters=\\["):
        LLM2Vec.from_pretrained(str(lost))


def test_offline_hub_ids_fail_fast_naming_the_local_route(published, tmp_path, monkeypatch):
    offline_base = tmp_path / "mntp-hub-base"
    shutil.copytree(published["mntp"], offline_base)
    set_base(offline_base, "meta-llama/Not-Cached-Base")
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    t0 = time.perf_counter()
    with pytest.raises(ModelNotFoundError, match="Not-Cached-Base.*offline mode.*from_pretrained\\('<base model dir>'"):
        LLM2Vec.from_pretrained(str(offline_base))
    with pytest.raises(ModelNotFoundError, match="adapter 'McGill-NLP/not-cached'.*offline"):
        LLM2Vec.from_pretrained(str(published["mntp"]), peft_model_name_or_path="McGill-NLP/not-cached")
    # not flagged offline, but no network: a closed local port stands in for an unreachable Hub
    monkeypatch.setenv("HF_HUB_OFFLINE", "0")
    monkeypatch.setenv("HF_ENDPOINT", "http://127.0.0.1:9")
    with pytest.raises(ModelNotFoundError, match="Hub is unreachable.*adapters=\\["):
        LLM2Vec.from_pretrained(HUB_MNTP, cache_dir=str(tmp_path / "empty-cache"))
    assert time.perf_counter() - t0 < 5


def _cache_repo(cache, repo_id, files_from):
    """A Hugging Face cache entry for ``repo_id`` holding the files of a local directory."""
    commit = COMMIT
    repo = cache / f"models--{repo_id.replace('/', '--')}"
    shutil.copytree(files_from, repo / "snapshots" / commit)
    (repo / "refs").mkdir(parents=True)
    (repo / "refs" / "main").write_text(commit)


def test_hub_ids_in_the_local_cache_load_offline(published, expected, tmp_path, monkeypatch):
    """A Hub id takes the same route as its directory: the published -mntp layout and a Hub adapter."""
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    cache = tmp_path / "hf"
    _cache_repo(cache, HUB_MNTP, published["mntp"])
    _cache_repo(cache, HUB_MNTP + "-supervised", published["sup"])
    enc = LLM2Vec.from_pretrained(HUB_MNTP, peft_model_name_or_path=HUB_MNTP + "-supervised",
                                  cache_dir=str(cache), doc_max_length=10**6)
    assert close(enc.encode(TEXTS), expected["both"])
    local_only = LLM2Vec.from_pretrained(HUB_MNTP, adapters=[HUB_MNTP + "-supervised"], cache_dir=str(cache),
                                         local_files_only=True, dtype="float32")
    assert close(local_only.encode(TEXTS), expected["both"])
    pinned = LLM2Vec.from_pretrained(HUB_MNTP, cache_dir=str(cache), revision=COMMIT, dtype="float32")
    assert close(pinned.encode(TEXTS), expected["mntp"])
    with pytest.raises(ModelNotFoundError, match="not in the local cache"):
        LLM2Vec.from_pretrained(HUB_MNTP, cache_dir=str(cache), revision="f" * 40)


def test_hub_id_plus_a_local_supervised_adapter(published, expected, tmp_path, monkeypatch):
    """The issue's second silent route: a Hub -mntp id with a local supervised folder stacks both."""
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    cache = tmp_path / "hf"
    _cache_repo(cache, HUB_MNTP, published["mntp"])
    for kwargs in ({"peft_model_name_or_path": str(published["sup"])}, {"adapters": [str(published["sup"])]}):
        enc = LLM2Vec.from_pretrained(HUB_MNTP, cache_dir=str(cache), dtype="float32", **kwargs)
        assert close(enc.encode(TEXTS, convert_to_numpy=True), expected["both"])


def test_an_instruct_mntp_by_hub_id_keys_the_template_on_its_adapters_base(published, tmp_path, monkeypatch):
    """llm2vec 0.2.3 by Hub id: transformers 4.44 loads the base named in adapter_config.json, and that
    name (not the Hub id) picks the chat template; as a local folder, its config.json's name does."""
    instruct = tmp_path / "LLM2Vec-Mistral-7B-Instruct-v2-mntp"
    shutil.copytree(published["mntp"], instruct)
    cfg = json.loads((instruct / "config.json").read_text())
    cfg["_name_or_path"] = "mistralai/Mistral-7B-Instruct-v0.2"  # as in the published repository
    (instruct / "config.json").write_text(json.dumps(cfg))
    local = LLM2Vec.from_pretrained(str(instruct), dtype="float32")
    assert local.chat_template is not None and local.chat_template.prefix == "[INST] "
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    cache = tmp_path / "hf"
    hub_id = "McGill-NLP/LLM2Vec-Mistral-7B-Instruct-v2-mntp"
    shutil.copytree(instruct, tmp_path / "hub-copy")
    set_base(tmp_path / "hub-copy", "mistralai/Mistral-7B-Instruct-v0.2")  # what the published adapter names
    _cache_repo(cache, hub_id, tmp_path / "hub-copy")
    _cache_repo(cache, "mistralai/Mistral-7B-Instruct-v0.2", published["base"])
    by_id = LLM2Vec.from_pretrained(hub_id, cache_dir=str(cache), dtype="float32")
    assert by_id.chat_template == local.chat_template
    assert close(by_id.encode(TEXTS), local.encode(TEXTS))
    # the adapter's base decides, not the folder's config.json: a plain base name means no template
    shutil.copytree(instruct, tmp_path / "plain-base")
    set_base(tmp_path / "plain-base", "mistralai/Mistral-7B-v0.1")
    _cache_repo(cache, "McGill-NLP/LLM2Vec-Mistral-7B-v2-mntp", tmp_path / "plain-base")
    _cache_repo(cache, "mistralai/Mistral-7B-v0.1", published["base"])
    assert LLM2Vec.from_pretrained("McGill-NLP/LLM2Vec-Mistral-7B-v2-mntp", cache_dir=str(cache)).chat_template is None


def test_reference_snippet_runs_unchanged(published):
    """The README snippet of llm2vec 0.2.3, with local directories for the Hub ids."""
    l2v = LLM2Vec.from_pretrained(
        str(published["mntp"]),
        peft_model_name_or_path=str(published["sup"]),
        device_map="cuda" if torch.cuda.is_available() else "cpu",
        torch_dtype=torch.bfloat16,
    )
    instruction = "Given a web search query, retrieve relevant passages that answer the query:"
    queries = [[instruction, "how much protein should a female eat"], [instruction, "summit define"]]
    q_reps = l2v.encode(queries)
    documents = ["As a general guideline, the CDC's average requirement of protein for women is 46 grams.",
                 "Definition of summit for English Learners: the highest point of a mountain."]
    d_reps = l2v.encode(documents)
    q_reps_norm = torch.nn.functional.normalize(q_reps, p=2, dim=1)
    d_reps_norm = torch.nn.functional.normalize(d_reps, p=2, dim=1)
    cos_sim = torch.mm(q_reps_norm, d_reps_norm.transpose(0, 1))
    assert cos_sim.shape == (2, 2) and torch.isfinite(cos_sim).all()


# ------------------------------------------------------- the reference's text handling
def _manual(enc, sequence, pooled_from_char):
    """Run ``sequence`` alone and mean-pool the tokens ending after ``pooled_from_char`` (None: all tokens)."""
    tok = enc.tokenizer(sequence, return_offsets_mapping=True)
    keep = [i for i, (s, e) in enumerate(tok["offset_mapping"])
            if pooled_from_char is None or e > pooled_from_char]
    ids = torch.tensor([tok["input_ids"]])
    with torch.inference_mode():
        hidden = enc.model(input_ids=ids, attention_mask=torch.ones_like(ids)).last_hidden_state[0]
    return hidden[keep].float().mean(0).numpy()


def test_skip_instruction_false_pools_the_instruction_too(tiny_model_dir):
    instr, text = "Given a claim, retrieve documents:", "cells divide"
    enc = LLM2Vec.from_pretrained(str(tiny_model_dir), dtype="float32", skip_instruction=False)
    both = enc.encode([[instr, text]], convert_to_numpy=True)[0]
    assert close(both, _manual(enc, f"{instr} {text}", None), 1e-5)
    skipping = LLM2Vec.from_pretrained(str(tiny_model_dir), dtype="float32").encode([[instr, text]])[0]
    assert not close(both, skipping, 1e-3)


def test_doc_max_length_cuts_texts_by_words(tiny_model_dir):
    long = " ".join(CORPUS[:6])
    enc = LLM2Vec.from_pretrained(str(tiny_model_dir), dtype="float32", doc_max_length=12)
    n = len(enc.tokenizer(long, add_special_tokens=False)["input_ids"])
    assert n > 12
    from llm2vec_rag.reference import cut_to_words

    cut = cut_to_words(enc.tokenizer, long, 12, enc.max_length)
    assert long.startswith(cut) and len(enc.tokenizer(cut, add_special_tokens=False)["input_ids"]) <= 12
    plain = LLM2Vec.from_pretrained(str(tiny_model_dir), dtype="float32")
    assert close(enc.encode([long], convert_to_numpy=True), plain.encode([cut]))
    assert close(enc.encode([["Find:", long]], convert_to_numpy=True), plain.encode([["Find:", cut]]))
    assert not close(plain.encode([long]), plain.encode([cut]), 1e-3)


def test_reference_chat_template_for_instruct_names(tmp_path):
    model_dir = write_tiny_model_dir(tmp_path / "mistral-instruct")
    cfg = json.loads((model_dir / "config.json").read_text())
    cfg["_name_or_path"] = "mistralai/Mistral-7B-Instruct-v0.2"
    (model_dir / "config.json").write_text(json.dumps(cfg))
    enc = LLM2Vec.from_pretrained(str(model_dir), dtype="float32")
    assert enc.chat_template is not None and enc.chat_template.prefix == "[INST] "
    instr, text = "Given a claim, retrieve documents:", "cells divide  "
    sequence = f"[INST] {instr} {text.rstrip()} [/INST]"
    got = enc.encode([[instr, text]])[0]
    assert close(got, _manual(enc, sequence, len(f"[INST] {instr} ")), 1e-5), "text and closing tag pooled"
    other = write_tiny_model_dir(tmp_path / "plain")
    assert LLM2Vec.from_pretrained(str(other), dtype="float32").chat_template is None


def test_worker_load_spec_reproduces_the_settings(published, tiny_model_dir):
    """parallel.py loads each worker from load_spec: the same settings, not the reference's defaults."""
    plain = LLM2Vec.from_pretrained(str(tiny_model_dir), dtype="float32")
    again = LLM2Vec.from_pretrained(**plain.load_spec)
    assert (again.doc_max_length, again.skip_instruction, again.tensor_outputs) == (None, True, False)
    ref = LLM2Vec.from_pretrained(str(published["mntp"]), peft_model_name_or_path=str(published["sup"]),
                                  skip_instruction=False)
    worker = LLM2Vec.from_pretrained(**ref.load_spec)
    assert (worker.doc_max_length, worker.skip_instruction) == (400, False)
    assert close(worker.encode(TEXTS, convert_to_numpy=True), ref.encode(TEXTS, convert_to_numpy=True))


def test_a_reference_qwen2_adapter_loaded_bidirectional_is_a_one_line_warning(tmp_path, caplog):
    """llm2vec 0.2.3's Qwen2BiModel runs causal (docs/parity.md): its Qwen2 adapters were trained causal."""
    import logging

    from transformers import AutoModel

    base = write_tiny_model_dir(tmp_path / "qwen2", "qwen2")
    adapter = make_lora(AutoModel.from_pretrained(str(base)), tmp_path / "qwen2-mntp", seed=1)
    (adapter / "llm2vec_config.json").write_text(json.dumps({"pooling_mode": "mean", "max_length": 512,
                                                             "doc_max_length": 400, "skip_instruction": True}))
    with caplog.at_level(logging.WARNING, logger="llm2vec_rag"):
        LLM2Vec.from_pretrained(str(base), peft_model_name_or_path=str(adapter))
    lines = [r.getMessage() for r in caplog.records if "Qwen2" in r.getMessage()]
    assert len(lines) == 1 and "\n" not in lines[0] and "enable_bidirectional=False" in lines[0]
    caplog.clear()
    with caplog.at_level(logging.WARNING, logger="llm2vec_rag"):
        LLM2Vec.from_pretrained(str(base), peft_model_name_or_path=str(adapter), enable_bidirectional=False)
        (adapter / "llm2vec_config.json").unlink()  # not the reference's: no warning either
        LLM2Vec.from_pretrained(str(base), peft_model_name_or_path=str(adapter))
    assert not [r for r in caplog.records if "Qwen2" in r.getMessage()]
