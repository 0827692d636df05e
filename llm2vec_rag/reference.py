"""What ``llm2vec==0.2.3`` does to a text before tokenizing it, for code written against it.

Two things change vectors there, and both are reproduced where the reference applies them:

* **Chat templates by model name.** ``LLM2Vec.prepare_for_tokenization`` wraps the whole input
  (instruction and text) in a user turn when ``config._name_or_path`` is one of a few instruct
  checkpoints; the template's closing tag counts as part of the text, so it is pooled.
* **``doc_max_length``** (default 400 there): a text longer than that many tokens is cut *by words*
  to about that length before tokenizing (``_convert_to_str``), instruction untouched.

Not reproduced, on purpose (docs/parity.md): the reference counts the text's tokens by tokenizing
it alone (one token off after an instruction on ~20% of SciFact queries), appends the literal
``" </s>"`` for ``eos_token`` pooling on every Llama/Mistral config, and fails on ``bos_token`` with a
tokenizer that adds no BOS.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any

REFERENCE_DOC_MAX_LENGTH = 400  # the reference's default


@dataclass(frozen=True)
class ChatTemplate:
    """``prefix + instruction + " " + text + suffix``; the suffix is pooled with the text, the prefix is not."""

    prefix: str
    suffix: str


_LLAMA3 = ChatTemplate("<|start_header_id|>user<|end_header_id|>\n\n", "<|eot_id|>")
_INST = ChatTemplate("[INST] ", " [/INST]")
_GEMMA2 = ChatTemplate("<bos><start_of_turn>user\n", "<end_of_turn>")
_QWEN2 = ChatTemplate("<|im_start|>user\n", "<|im_end|>")

# config._name_or_path -> template, exactly the names llm2vec 0.2.3 tests for
CHAT_TEMPLATES: dict[str, ChatTemplate] = {
    "meta-llama/Meta-Llama-3-8B-Instruct": _LLAMA3,
    "mistralai/Mistral-7B-Instruct-v0.2": _INST,
    "meta-llama/Llama-2-7b-chat-hf": _INST,
    "google/gemma-2-9b-it": _GEMMA2,
    "Qwen/Qwen2-1.5B-Instruct": _QWEN2,
    "Qwen/Qwen2-7B-Instruct": _QWEN2,
}


def chat_template(name_or_path: str | None) -> ChatTemplate | None:
    """The reference's template for a checkpoint name (a local path's ``config.json`` ``_name_or_path``)."""
    return CHAT_TEMPLATES.get(str(name_or_path or ""))


def token_count(tokenizer: Any, text: str, max_length: int) -> int:
    ids = tokenizer(text, add_special_tokens=False, truncation=True, max_length=max_length)["input_ids"]
    return len(ids)


def cut_to_words(tokenizer: Any, text: str, doc_max_length: int, max_length: int) -> str:
    """The reference's ``doc_max_length`` loop: drop trailing words until at most ``doc_max_length`` tokens.

    Counts are capped at ``max_length`` as in the reference (it tokenizes with truncation).
    Texts of at most ``doc_max_length - 2`` UTF-8 bytes cannot be longer and are not tokenized.
    """
    if len(text.encode("utf-8")) + 2 <= doc_max_length:
        return text
    n = token_count(tokenizer, text, max_length)
    while n > doc_max_length:
        words = text.split()
        text = " ".join(words[: int(len(words) * (doc_max_length / n))])
        n = token_count(tokenizer, text, max_length)
    return text
