"""Turn texts and ``[instruction, text]`` pairs into token ids plus the mask of text tokens.

The model sees ``instruction + " " + text`` as one sequence; only the text's
tokens are pooled. We find them from the tokenizer's character offsets in a
single pass: no separator string inside user text, no second tokenization.
"""
from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

Text = str | Sequence[str]


@dataclass
class Tokenized:
    ids: list[int]
    text_mask: list[int]  # 1 where the token belongs to the text (pooled)


def split_input(item: object, position: int) -> tuple[str, str]:
    """``"text"`` → ("", "text"); ``[instruction, text]`` → both. Anything else is a TypeError."""
    if isinstance(item, str):
        return "", item
    if isinstance(item, (list, tuple)) and len(item) == 2 and all(isinstance(x, str) for x in item):
        return item[0], item[1]
    raise TypeError(
        f"input {position} must be a string or an [instruction, text] pair of strings, "
        f"got {type(item).__name__}"
    )


def join(instruction: str, text: str) -> tuple[str, int]:
    """The sequence the model sees, and the character where the text starts."""
    instruction = instruction.strip()
    if not instruction:
        return text, 0
    prefix = instruction + " "
    return prefix + text, len(prefix)


def tokenize_all(
    tokenizer,
    items: Sequence[object],
    max_length: int,
    append_eos: bool = False,
    prepend_bos: bool = False,
    include_special_tokens: bool = False,
    pool_all: bool = False,
    template=None,
) -> list[Tokenized]:
    """Tokenize every input once, truncated to ``max_length`` tokens (text end cut first).

    ``include_special_tokens`` pools the tokenizer's own specials ([CLS]/[SEP])
    as sentence-transformers models expect; decoders pool only text tokens.
    ``pool_all`` pools every token, instruction included (the reference's ``skip_instruction=False``).
    ``template`` (a :class:`llm2vec_rag.reference.ChatTemplate`) wraps each input in the reference's
    chat turn: its prefix is not pooled, its suffix is (as in the reference).
    """
    pairs = [split_input(item, i) for i, item in enumerate(items)]
    joined = [join(instr, text) for instr, text in pairs]
    if not joined:
        return []
    suffix_at = [None] * len(joined)
    if template is not None:
        wrapped = []
        for i, (seq, start) in enumerate(joined):
            body = seq.rstrip()
            suffix_at[i] = len(template.prefix) + len(body)
            wrapped.append((template.prefix + body + template.suffix, start + len(template.prefix)))
        joined = wrapped
    reserve = int(append_eos) + int(prepend_bos)
    enc = tokenizer(
        [seq for seq, _ in joined],
        add_special_tokens=True,
        truncation=True,
        max_length=max(1, max_length - reserve),
        return_offsets_mapping=True,
        return_special_tokens_mask=True,
    )
    out: list[Tokenized] = []
    for i, (_, start) in enumerate(joined):
        ids = list(enc["input_ids"][i])
        offsets = enc["offset_mapping"][i]
        special = enc["special_tokens_mask"][i]
        mask = []
        for (s, e), sp in zip(offsets, special):
            if suffix_at[i] is not None and s >= suffix_at[i] and e > s:
                mask.append(1)  # the template's closing tag: pooled, as in the reference
            elif sp:
                mask.append(1 if include_special_tokens else 0)
            else:
                mask.append(1 if e > start and e > s else 0)
        if prepend_bos and tokenizer.bos_token_id is not None and (not ids or ids[0] != tokenizer.bos_token_id):
            ids.insert(0, tokenizer.bos_token_id)
            mask.insert(0, 0)
        if append_eos and tokenizer.eos_token_id is not None:
            ids.append(tokenizer.eos_token_id)
            mask.append(1)
        if not ids:  # an empty string with a tokenizer that adds nothing: one filler token
            filler = tokenizer.eos_token_id if tokenizer.eos_token_id is not None else (tokenizer.pad_token_id or 0)
            ids, mask = [filler], [1]
        if pool_all or not any(mask):  # pool_all; or an empty text after an instruction: pool what there is
            mask = [1] * len(ids)
        out.append(Tokenized(ids=ids, text_mask=mask))
    return out
