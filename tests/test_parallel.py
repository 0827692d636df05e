"""Multi-process encoding: one model per worker, same vectors, input order kept."""
from __future__ import annotations

import numpy as np
import pytest

from llm2vec_rag import LLM2Vec
from llm2vec_rag.errors import LLM2VecError

from conftest import CORPUS


def test_two_cpu_workers_match_single_process(tiny_model_dir):
    enc = LLM2Vec.from_pretrained(str(tiny_model_dir), dtype="float32", pooling_mode="weighted_mean")
    texts = CORPUS[:9] + [["Find:", "cells"], ""]
    pool = enc.start_multi_process_pool(["cpu", "cpu"])
    try:
        assert len(pool.processes) == 2
        many = enc.encode_multi_process(texts, pool, chunk_size=3, normalize_embeddings=True)
    finally:
        enc.stop_multi_process_pool(pool)
    assert not any(p.is_alive() for p in pool.processes)
    assert np.allclose(many, enc.encode(texts, normalize_embeddings=True), atol=1e-5)


def test_encoder_without_spec_is_saved_for_workers(tiny_encoder):
    import copy

    enc = copy.copy(tiny_encoder)
    enc.load_spec = None
    pool = enc.start_multi_process_pool(["cpu"])
    try:
        assert np.allclose(enc.encode_multi_process(CORPUS[:2], pool), enc.encode(CORPUS[:2]), atol=1e-5)
    finally:
        enc.stop_multi_process_pool(pool)


def test_worker_start_failure_is_a_clear_error(tiny_encoder):
    import copy

    enc = copy.copy(tiny_encoder)
    enc.load_spec = {"model": "no-such-model"}
    with pytest.raises(LLM2VecError, match="worker failed to start: ModelNotFoundError: unknown model"):
        enc.start_multi_process_pool(["cpu"])
