"""The native engine keeps transformers' contract: ``.tokenizer`` and ``.model`` called as transformers' are.

Each call is made on both engines' objects and the outputs compared: the tokenizer token for token
(padding, truncation, pairs, tensors), the model on every real token of every hidden state.
"""
from __future__ import annotations

import numpy as np
import pytest
import torch

from llm2vec_rag import LLM2Vec
from llm2vec_rag.light_tokenizer import LightTokenizer

from conftest import CORPUS


@pytest.fixture(scope="module")
def engines(tiny_model_dir):
    native = LLM2Vec.from_pretrained(str(tiny_model_dir), dtype="float32", engine="native")
    hf = LLM2Vec.from_pretrained(str(tiny_model_dir), dtype="float32", engine="transformers")
    assert isinstance(native.tokenizer, LightTokenizer) and not isinstance(hf.tokenizer, LightTokenizer)
    return native, hf


def plain(out):
    return {k: (v.tolist() if hasattr(v, "tolist") else v) for k, v in dict(out).items()}


CALLS = [
    ((["Cells divide."],), {"return_tensors": "pt"}),
    ((CORPUS[:3],), {"padding": True, "return_tensors": "pt"}),
    ((CORPUS[:3],), {"padding": "max_length", "max_length": 24, "truncation": True, "return_tensors": "np"}),
    ((CORPUS[:3],), {"truncation": True, "max_length": 4}),
    ((CORPUS[:2], CORPUS[2:4]), {"padding": True, "truncation": True, "max_length": 12, "return_tensors": "pt"}),
    (([[CORPUS[0], CORPUS[1]], [CORPUS[2], "short"]],), {"padding": "longest"}),
    (("a single text",), {}),
    (("a single text", "its pair"), {"return_tensors": "pt"}),
    ((CORPUS[0],), {"max_length": 3}),
    ((CORPUS[:2],), {"padding": True, "return_offsets_mapping": True, "return_special_tokens_mask": True}),
    ((CORPUS[:2],), {"padding": True, "pad_to_multiple_of": 8, "add_special_tokens": False}),
]


@pytest.mark.parametrize("args,kwargs", CALLS)
def test_tokenizer_takes_the_transformers_call(engines, args, kwargs):
    native, hf = engines
    got, want = native.tokenizer(*args, **kwargs), hf.tokenizer(*args, **kwargs)
    assert plain(got) == plain(want)
    if kwargs.get("return_tensors") == "pt":
        assert isinstance(got["input_ids"], torch.Tensor) and got.input_ids.dtype == torch.long
        assert got.to("cpu") is got


def test_tokenizer_errors_like_transformers(engines):
    native, _ = engines
    with pytest.raises(ValueError, match="padding=True"):
        native.tokenizer(CORPUS[:2] + ["x"], return_tensors="pt")
    with pytest.raises(TypeError, match="does not take"):
        native.tokenizer("x", stride=2)
    assert native.tokenizer.encode("a b") == engines[1].tokenizer.encode("a b")


@pytest.mark.parametrize("bidirectional", [True, False])
def test_model_takes_the_transformers_call(tiny_model_dir, bidirectional):
    native = LLM2Vec.from_pretrained(str(tiny_model_dir), dtype="float32", engine="native",
                                     enable_bidirectional=bidirectional)
    hf = LLM2Vec.from_pretrained(str(tiny_model_dir), dtype="float32", engine="transformers",
                                 enable_bidirectional=bidirectional)
    for texts in (CORPUS[:3], ["one text, no padding"]):
        batch = native.tokenizer(texts, padding=True, return_tensors="pt")
        with torch.inference_mode():
            got = native.model(**batch, output_hidden_states=True)
            want = hf.model(**batch, output_hidden_states=True)
        real = batch["attention_mask"].bool()
        assert len(got.hidden_states) == len(want.hidden_states) == native.model.config.num_hidden_layers + 1
        assert torch.allclose(got.last_hidden_state[real], want.last_hidden_state[real], atol=1e-4)
        for a, b in zip(got.hidden_states, want.hidden_states):
            assert torch.allclose(a[real], b[real], atol=1e-4)
        assert got[0] is got.last_hidden_state and got["hidden_states"] is got.hidden_states
        assert native.model(**batch).hidden_states is None
    vectors = native.encode(CORPUS[:4])
    assert np.allclose(vectors, hf.encode(CORPUS[:4]), atol=1e-4)
