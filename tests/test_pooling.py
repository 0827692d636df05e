from __future__ import annotations

import pytest
import torch

from llm2vec_rag.errors import LLM2VecError
from llm2vec_rag.pooling import POOLING_MODES, check_pooling_mode, pool

# batch of 2, seq 4, dim 2; row 0 left-padded by one
HIDDEN = torch.tensor(
    [
        [[9.0, 9.0], [1.0, 2.0], [3.0, 4.0], [5.0, 6.0]],
        [[1.0, 0.0], [2.0, 0.0], [3.0, 0.0], [4.0, 0.0]],
    ]
)
ATTN = torch.tensor([[0, 1, 1, 1], [1, 1, 1, 1]])
TEXT = torch.tensor([[0, 0, 1, 1], [0, 1, 1, 1]])  # instruction tokens excluded


def test_mean_pools_only_text_tokens():
    out = pool(HIDDEN, TEXT, ATTN, "mean")
    assert torch.allclose(out, torch.tensor([[4.0, 5.0], [3.0, 0.0]]))


def test_weighted_mean_weighs_later_tokens_more():
    out = pool(HIDDEN, TEXT, ATTN, "weighted_mean")
    # row 0: weights 1,2 over (3,4),(5,6) -> (13/3, 16/3); row 1: 1,2,3 over 2,3,4 -> 20/6
    assert torch.allclose(out, torch.tensor([[13 / 3, 16 / 3], [20 / 6, 0.0]]))


@pytest.mark.parametrize("mode", ["eos_token", "last_token"])
def test_last_position(mode):
    assert torch.equal(pool(HIDDEN, TEXT, ATTN, mode), HIDDEN[:, -1])


def test_bos_is_first_real_token_despite_left_padding():
    assert torch.equal(pool(HIDDEN, TEXT, ATTN, "bos_token"), torch.stack([HIDDEN[0, 1], HIDDEN[1, 0]]))


def test_pooling_returns_float32_from_bf16():
    assert pool(HIDDEN.bfloat16(), TEXT, ATTN, "mean").dtype == torch.float32


def test_unknown_mode_lists_valid_ones():
    with pytest.raises(LLM2VecError, match="choose one of: mean, weighted_mean, eos_token, last_token, bos_token"):
        check_pooling_mode("max")
    assert set(POOLING_MODES) == {"mean", "weighted_mean", "eos_token", "last_token", "bos_token"}
