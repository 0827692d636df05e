from __future__ import annotations

import pytest

from llm2vec_rag.instructions import join, split_input, tokenize_all


def decoded_text_tokens(tokenizer, t):
    return tokenizer.decode([i for i, m in zip(t.ids, t.text_mask) if m])


def test_pair_masks_exactly_the_text(tiny_tokenizer):
    (t,) = tokenize_all(tiny_tokenizer, [["Given a claim:", "Cells are basic"]], max_length=64)
    assert decoded_text_tokens(tiny_tokenizer, t).strip() == "Cells are basic"
    assert tiny_tokenizer.decode(t.ids) == "Given a claim: Cells are basic"
    assert t.text_mask[0] == 0


def test_plain_text_is_all_text(tiny_tokenizer):
    (t,) = tokenize_all(tiny_tokenizer, ["Cells are basic"], max_length=64)
    assert all(t.text_mask) and tiny_tokenizer.decode(t.ids) == "Cells are basic"


def test_separator_like_strings_in_user_text_are_just_text(tiny_tokenizer):
    (t,) = tokenize_all(tiny_tokenizer, [["Find:", "a !@#$%^&*() b"]], max_length=64)
    assert decoded_text_tokens(tiny_tokenizer, t).strip() == "a !@#$%^&*() b"


def test_truncation_keeps_at_most_max_length(tiny_tokenizer):
    (t,) = tokenize_all(tiny_tokenizer, ["Cells are basic " * 100], max_length=16, append_eos=True)
    assert len(t.ids) == 16 and t.ids[-1] == tiny_tokenizer.eos_token_id


def test_bos_prepended_and_not_pooled(tiny_tokenizer):
    (t,) = tokenize_all(tiny_tokenizer, ["Cells"], max_length=16, prepend_bos=True)
    assert t.ids[0] == tiny_tokenizer.bos_token_id and t.text_mask[0] == 0


def test_empty_inputs_still_give_a_token(tiny_tokenizer):
    empty, instr_only = tokenize_all(tiny_tokenizer, ["", ["Find:", ""]], max_length=16)
    assert len(empty.ids) == 1 and empty.text_mask == [1]
    assert instr_only.ids and all(instr_only.text_mask)  # nothing to pool but the instruction


@pytest.mark.parametrize("bad, position", [([1, "x"], 0), (["x", None], 1), (["x", ["a", "b", "c"]], 1), (["x", ["a", 2]], 1)])
def test_non_strings_are_type_errors_naming_the_position(bad, position, tiny_tokenizer):
    with pytest.raises(TypeError, match=f"input {position} must be a string"):
        tokenize_all(tiny_tokenizer, bad, max_length=8)


def test_join_and_split():
    assert join("  Find docs:  ", "text") == ("Find docs: text", len("Find docs: "))
    assert join("", "text") == ("text", 0)
    assert split_input(("a", "b"), 0) == ("a", "b")
