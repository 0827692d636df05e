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


VERY_LARGE_INTEGER = int(1e30)  # transformers' "no limit" model_max_length


class BatchEncoding(dict):
    """A dict of the tokenizer's outputs with attribute access and ``.to(device)``, as in transformers."""

    def __getattr__(self, name: str) -> Any:
        try:
            return self[name]
        except KeyError:
            raise AttributeError(name) from None

    def to(self, device: Any) -> "BatchEncoding":
        for key, value in self.items():
            if hasattr(value, "to"):
                self[key] = value.to(device)
        return self


def _truncation_strategy(truncation: bool | str | None, max_length: int | None, padding: bool | str) -> str | None:
    """transformers' rule: ``True`` is longest_first; ``None`` truncates only when max_length is given without padding."""
    if truncation is None:
        return "longest_first" if max_length is not None and padding in (False, "do_not_pad") else None
    if truncation is False or truncation == "do_not_truncate":
        return None
    if truncation is True:
        return "longest_first"
    if truncation not in ("longest_first", "only_first", "only_second"):
        raise ValueError(f"unknown truncation strategy {truncation!r}")
    return str(truncation)


def _padding_length(padding: bool | str, max_length: int | None, model_max_length: int) -> int | None | bool:
    """False: no padding; None: to the longest in the batch; an int: to that length."""
    if padding is False or padding == "do_not_pad":
        return False
    if padding is True or padding == "longest":
        return None
    if padding == "max_length":
        return max_length if max_length is not None else model_max_length
    raise ValueError(f"unknown padding strategy {padding!r}")


def _as_tensors(out: dict[str, Any], return_tensors: str | None) -> dict[str, Any]:
    if return_tensors is None:
        return out
    if return_tensors == "pt":
        import torch

        convert = lambda v: torch.tensor(v, dtype=torch.long)  # noqa: E731
    elif return_tensors == "np":
        import numpy as np

        convert = lambda v: np.asarray(v, dtype=np.int64)  # noqa: E731
    else:
        raise ValueError(f"return_tensors={return_tensors!r}: LightTokenizer returns 'pt', 'np' or lists")
    lengths = {len(row) for row in out["input_ids"]}
    if len(lengths) > 1:
        raise ValueError("Unable to create tensors of texts of different lengths; use padding=True")
    return {k: convert(v) for k, v in out.items()}


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
        self.model_input_names = list(config.get("model_input_names") or ["input_ids", "attention_mask"])
        self._model_max_length = int(config.get("model_max_length") or VERY_LARGE_INTEGER)

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
        text: str | Sequence[str] | Sequence[Sequence[str]],
        text_pair: str | Sequence[str] | None = None,
        add_special_tokens: bool = True,
        padding: bool | str = False,
        truncation: bool | str | None = None,
        max_length: int | None = None,
        return_tensors: str | None = None,
        return_offsets_mapping: bool = False,
        return_special_tokens_mask: bool = False,
        return_attention_mask: bool | None = None,
        return_token_type_ids: bool | None = None,
        pad_to_multiple_of: int | None = None,
        padding_side: str | None = None,
        **unsupported: Any,
    ) -> "BatchEncoding":
        """transformers' call convention: batches, pairs, padding, truncation, ``return_tensors``.

        Same backend calls as ``PreTrainedTokenizerFast`` (padding and truncation set on the
        ``tokenizers`` object for the call), so the output is the same (tested).
        """
        if unsupported:
            raise TypeError(f"LightTokenizer does not take {sorted(unsupported)}")
        single = isinstance(text, str) or (text_pair is not None and isinstance(text_pair, str))
        if text_pair is not None:
            firsts = [text] if isinstance(text, str) else list(text)
            seconds = [text_pair] if isinstance(text_pair, str) else list(text_pair)
            if len(firsts) != len(seconds):
                raise ValueError(f"text and text_pair differ in length ({len(firsts)} and {len(seconds)})")
            inputs: list[Any] = list(zip(firsts, seconds))
        else:
            inputs = [text] if single else [tuple(t) if isinstance(t, (list, tuple)) else t for t in text]
        strategy = _truncation_strategy(truncation, max_length, padding)
        if strategy is not None:
            limit = max_length if max_length is not None else self.model_max_length
            self._tok.enable_truncation(max_length=limit, strategy=strategy)
        pad_to = _padding_length(padding, max_length, self.model_max_length)
        if pad_to is not False:
            if self.pad_token_id is None:
                raise ValueError("Asking to pad but the tokenizer does not have a padding token; "
                                 "set tokenizer.pad_token = tokenizer.eos_token first")
            self._tok.enable_padding(direction=padding_side or self.padding_side, pad_id=self.pad_token_id,
                                     pad_token=self.pad_token, length=pad_to, pad_to_multiple_of=pad_to_multiple_of)
        try:
            encodings = self._tok.encode_batch(inputs, add_special_tokens=add_special_tokens)
        finally:
            self._tok.no_truncation()
            self._tok.no_padding()
        out: dict[str, Any] = {"input_ids": [e.ids for e in encodings]}
        if return_token_type_ids or (return_token_type_ids is None and "token_type_ids" in self.model_input_names):
            out["token_type_ids"] = [e.type_ids for e in encodings]
        if return_attention_mask or return_attention_mask is None:
            out["attention_mask"] = [e.attention_mask for e in encodings]
        if return_offsets_mapping:
            out["offset_mapping"] = [e.offsets for e in encodings]
        if return_special_tokens_mask:
            out["special_tokens_mask"] = [e.special_tokens_mask for e in encodings]
        if return_tensors is None and single:
            out = {k: v[0] for k, v in out.items()}
        return BatchEncoding(_as_tensors(out, return_tensors))

    model_max_length = property(lambda self: self._model_max_length)

    def encode(self, text: str, text_pair: str | None = None, add_special_tokens: bool = True, **options: Any):
        """Token ids of one text (or pair), as ``PreTrainedTokenizerFast.encode``."""
        return self(text, text_pair, add_special_tokens=add_special_tokens, **options)["input_ids"]

    def batch_decode(self, sequences: Sequence[Sequence[int]], skip_special_tokens: bool = False) -> list[str]:
        return [self.decode(ids, skip_special_tokens=skip_special_tokens) for ids in sequences]

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
