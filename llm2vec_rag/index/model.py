"""Load the encoder an index records, so ``search`` needs no ``--model``.

Test hook (not a user feature): a model spec starting with ``fake:`` is built by
the factory named in ``LLM2VEC_RAG_TEST_ENCODER_FACTORY`` (``module:function``),
which lets subprocess tests run the real CLI without a real model.
"""
from __future__ import annotations

import importlib
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from ..errors import LLM2VecError

FACTORY_ENV = "LLM2VEC_RAG_TEST_ENCODER_FACTORY"


def model_spec(model: str) -> str:
    """The model argument as it should be recorded: absolute when it names a path on disk."""
    text = os.fspath(model)
    if text.startswith("fake:"):
        return text
    path = Path(text).expanduser()
    return str(path.resolve()) if path.exists() else text


LOAD_OPTIONS = ("pooling_mode", "max_length", "dtype", "device", "compile")


def load_options(options: Mapping[str, Any]) -> dict[str, Any]:
    """The options given when opening an index that ``load_encoder`` takes (set ones only)."""
    return {k: v for k, v in options.items() if k in LOAD_OPTIONS and v is not None}


def load_encoder(model: str, adapters: list[str] | tuple[str, ...] = (), pooling_mode: str | None = None,
                 max_length: int | None = None, dtype: str = "auto", device: str = "auto",
                 compile: bool = False) -> Any:
    """``LLM2Vec.from_pretrained`` with the recorded arguments (or the test factory for ``fake:``)."""
    if str(model).startswith("fake:"):
        factory = os.environ.get(FACTORY_ENV)
        if not factory:
            raise LLM2VecError(f"unknown model {model!r}")
        module, _, name = factory.partition(":")
        return getattr(importlib.import_module(module), name)(str(model))
    from ..encoder import LLM2Vec

    return LLM2Vec.from_pretrained(model, adapters=list(adapters) or None, pooling_mode=pooling_mode,
                                   max_length=max_length, dtype=dtype, device=device, compile=compile)


def encoder_record(encoder: Any, model: str | None = None, adapters: list[str] | tuple[str, ...] = ()) -> dict:
    """What the index stores about its encoder: enough to reload it and to check it is the same one."""
    spec = model_spec(model) if model else model_spec(str(getattr(encoder, "name", "custom")))
    return {
        "model": str(getattr(encoder, "name", spec)),
        "model_args": {
            "model": spec,
            "adapters": [str(Path(a).expanduser().resolve()) for a in adapters],
            "pooling_mode": getattr(encoder, "pooling_mode", None),
            "max_length": getattr(encoder, "max_length", None),
        },
        "fingerprint": str(encoder.fingerprint()),
        "dim": int(encoder.dim),
        "pooling_mode": getattr(encoder, "pooling_mode", None),
        "query_instruction": str(getattr(encoder, "query_instruction", "") or ""),
        "document_instruction": str(getattr(encoder, "document_instruction", "") or ""),
        "max_length": getattr(encoder, "max_length", None),
    }
