"""``compile=True`` (``--compile``): the same vectors as eager inference, through torch.compile."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from llm2vec_rag import LLM2Vec

TEXTS = ["a short one", "a somewhat longer text about rivers carrying sediment to the sea",
         "proteins fold", "wings and lift and the shape of aircraft",
         # long enough (64+ tokens) that eager CPU inference takes span attention; compiled keeps SDPA
         " ".join(["sediment settles where the river slows and the delta grows"] * 8)]


@pytest.mark.timeout(600)
def test_compiled_encoder_matches_eager(tiny_model_dir):
    eager = LLM2Vec.from_pretrained(str(tiny_model_dir), dtype="float32")
    compiled = LLM2Vec.from_pretrained(str(tiny_model_dir), dtype="float32", compile=True)
    assert compiled.load_spec["compile"] is True and compiled.compile
    a = eager.encode(TEXTS, batch_size=2, max_batch_tokens=160, normalize_embeddings=True)
    b = compiled.encode(TEXTS, batch_size=2, max_batch_tokens=160, normalize_embeddings=True)  # shapes vary: dynamic
    graphs = torch._dynamo.utils.counters["stats"]["unique_graphs"]
    compiled.encode([t + " and more words" * k for k, t in enumerate(TEXTS)], batch_size=3, max_batch_tokens=300)
    assert torch._dynamo.utils.counters["stats"]["unique_graphs"] == graphs  # new lengths: no recompile
    assert isinstance(compiled._compiled, torch._dynamo.eval_frame.OptimizedModule)
    assert compiled._compiled._orig_mod is compiled.model
    np.testing.assert_allclose((a * b).sum(1), 1.0, atol=1e-4)
    q = compiled.encode_queries(["what carries sediment?"], normalize_embeddings=True)
    assert np.allclose(q, eager.encode_queries(["what carries sediment?"], normalize_embeddings=True), atol=1e-4)
