"""The tokenizer of a saved fast tokenizer, read with the ``tokenizers`` library alone.

Why: importing transformers' tokenizer classes costs ~0.9 s of a ~3 s start-up,
and for a checkpoint saved as the generic fast class transformers only wraps
the same ``tokenizers`` object. This class answers the calls the encoder and
the chunker make (ids, offsets, special-token masks, truncation) with the
same backend, so the output is the same token for token (tested against
transformers). Anything else loads through transformers as before.
"""
from __future__ import annotations

import json
import shutil
from collections.abc import Sequence
from pathlib import Path
from typing import Any

FILES = ("tokenizer.json", "tokenizer_config.json", "special_tokens_map.json", "chat_template.jinja")
SPECIALS = ("bos_token", "eos_token", "pad_token", "unk_token")


def _content(value: Any) -> str | None:
    if isinstance(value, dict):  # older configs store AddedToken dicts
        value = value.get("content")
    return value if isinstance(value, str) else None


class LightTokenizer:
    """``PreTrainedTokenizerFast``'s call for what llm2vec-rag asks of it; nothing more."""

    def __init__(self, source: str | Path) -> None:
        from tokenizers import Tokenizer

        self.source = Path(source)
        self._tok = Tokenizer.from_file(str(self.source / "tokenizer.json"))
        self._tok.no_padding()
        self._tok.no_truncation()
        config = json.loads((self.source / "tokenizer_config.json").read_text(encoding="utf-8"))
        self.padding_side = config.get("padding_side", "right")
        self._specials = {name: _content(config.get(name)) for name in SPECIALS}

    # special tokens, by string and by id, as transformers exposes them
    def _id(self, name: str) -> int | None:
        token = self._specials[name]
        return None if token is None else self._tok.token_to_id(token)

    bos_token = property(lambda self: self._specials["bos_token"])
    eos_token = property(lambda self: self._specials["eos_token"])
    unk_token = property(lambda self: self._specials["unk_token"])
    bos_token_id = property(lambda self: self._id("bos_token"))
    eos_token_id = property(lambda self: self._id("eos_token"))
    pad_token_id = property(lambda self: self._id("pad_token"))

    @property
    def pad_token(self) -> str | None:
        return self._specials["pad_token"]

    @pad_token.setter
    def pad_token(self, value: str | None) -> None:
        self._specials["pad_token"] = value

    def __len__(self) -> int:
        return self._tok.get_vocab_size(with_added_tokens=True)

    def __call__(
        self,
        text: str | Sequence[str],
        add_special_tokens: bool = True,
        truncation: bool = False,
        max_length: int | None = None,
        return_offsets_mapping: bool = False,
        return_special_tokens_mask: bool = False,
        **unsupported: Any,
    ) -> dict[str, Any]:
        if unsupported:
            raise TypeError(f"LightTokenizer does not take {sorted(unsupported)}")
        single = isinstance(text, str)
        texts = [text] if single else list(text)
        if truncation and max_length is not None:
            self._tok.enable_truncation(max_length=max_length)
        try:
            encodings = self._tok.encode_batch(texts, add_special_tokens=add_special_tokens)
        finally:
            self._tok.no_truncation()
        out: dict[str, Any] = {
            "input_ids": [e.ids for e in encodings],
            "attention_mask": [e.attention_mask for e in encodings],
        }
        if return_offsets_mapping:
            out["offset_mapping"] = [e.offsets for e in encodings]
        if return_special_tokens_mask:
            out["special_tokens_mask"] = [e.special_tokens_mask for e in encodings]
        return {k: v[0] for k, v in out.items()} if single else out

    def decode(self, ids: Sequence[int], skip_special_tokens: bool = False) -> str:
        return self._tok.decode(list(ids), skip_special_tokens=skip_special_tokens)

    def convert_ids_to_tokens(self, ids: int | Sequence[int]) -> str | list[str]:
        if isinstance(ids, int):
            return self._tok.id_to_token(ids)
        return [self._tok.id_to_token(i) for i in ids]

    def get_vocab(self) -> dict[str, int]:
        return self._tok.get_vocab(with_added_tokens=True)

    def save_pretrained(self, out: str | Path) -> None:
        """The files it was read from (pad token included), which transformers reloads as before."""
        out = Path(out)
        out.mkdir(parents=True, exist_ok=True)
        for name in FILES:
            if (self.source / name).is_file() and name != "tokenizer_config.json":
                shutil.copyfile(self.source / name, out / name)
        config = json.loads((self.source / "tokenizer_config.json").read_text(encoding="utf-8"))
        config.update({k: v for k, v in self._specials.items() if v is not None})
        (out / "tokenizer_config.json").write_text(json.dumps(config, indent=2) + "\n", encoding="utf-8")


__all__ = ["LightTokenizer"]
