"""What the LangChain and LlamaIndex adapters share: one encoder per load, one lock per encoder.

Frameworks build embedding objects freely (one per chain, per index, per
test), so loading weights in every constructor would multiply memory and
start-up time. :func:`get_encoder` keeps a process-wide cache keyed by the
load arguments; :func:`encode_lock` serialises calls into one encoder, so
async callers that run it in worker threads never share the tokenizer at once.
"""
from __future__ import annotations

import importlib
import os
import threading
import weakref
from collections.abc import Sequence
from pathlib import Path
from types import ModuleType
from typing import TYPE_CHECKING, Any

from llm2vec_rag.errors import LLM2VecError

if TYPE_CHECKING:  # pragma: no cover
    from llm2vec_rag.encoder import LLM2Vec

DEFAULT_MODEL = "smollm2-135m"

_CACHE: dict[tuple, LLM2Vec] = {}
_CACHE_LOCK = threading.Lock()
_ENCODE_LOCKS: weakref.WeakKeyDictionary[Any, threading.Lock] = weakref.WeakKeyDictionary()
_LOCKS_LOCK = threading.Lock()


class MissingExtraError(LLM2VecError, ImportError):
    """An adapter's framework is not installed; the message names the pip extra."""


def require(module: str, extra: str, package: str) -> ModuleType:
    """Import ``module`` or raise :class:`MissingExtraError` telling the user which extra to install."""
    try:
        return importlib.import_module(module)
    except ImportError as exc:
        raise MissingExtraError(
            f"{package} is not installed (needed by llm2vec_rag.integrations.{extra.replace('-', '_')}); "
            f'install it with: pip install "llm2vec-rag[{extra}]"'
        ) from exc


def _path_or_name(spec: str | os.PathLike[str]) -> str:
    """An existing path becomes absolute (``./m`` and ``/abs/m`` share a load); a name is case-folded."""
    text = os.fspath(spec).strip()
    path = Path(text).expanduser()
    if path.exists():
        return str(path.resolve())
    return text.lower()


def cache_key(
    model: str | os.PathLike[str],
    adapters: Sequence[str | os.PathLike[str]] | str | None = None,
    **options: Any,
) -> tuple:
    """The load arguments, normalised so equal loads compare equal."""
    if isinstance(adapters, (str, os.PathLike)):
        adapters = [adapters]
    normal_adapters = tuple(_path_or_name(a) for a in (adapters or ()))
    normal_options = tuple(sorted((k, str(v)) for k, v in options.items()))
    return (_path_or_name(model), normal_adapters, normal_options)


def get_encoder(
    model: str | os.PathLike[str] = DEFAULT_MODEL,
    adapters: Sequence[str | os.PathLike[str]] | str | None = None,
    **options: Any,
) -> LLM2Vec:
    """Load (once per process) an ``LLM2Vec`` for these arguments; later calls return the same object.

    ``options`` are passed to :meth:`LLM2Vec.from_pretrained` (pooling_mode,
    max_length, dtype, device, query_instruction, ...); ``None`` values are
    dropped so they keep the model's saved defaults and share the cache entry.
    """
    from llm2vec_rag import LLM2Vec

    options = {k: v for k, v in options.items() if v is not None}
    key = cache_key(model, adapters, **options)
    with _CACHE_LOCK:  # held during the load: two threads asking at once still load once
        encoder = _CACHE.get(key)
        if encoder is None:
            encoder = LLM2Vec.from_pretrained(model, adapters=adapters, **options)
            _CACHE[key] = encoder
        return encoder


def resolve_encoder(encoder: Any, model: str | os.PathLike[str], **load_options: Any) -> LLM2Vec:
    """The encoder an adapter object uses: the one it was given, else the shared one for its load arguments."""
    if encoder is None:
        return get_encoder(model, **load_options)
    from llm2vec_rag.encoder import LLM2Vec

    if not isinstance(encoder, LLM2Vec):
        raise TypeError(f"encoder must be an LLM2Vec, got {type(encoder).__name__}")
    return encoder


def clear_encoder_cache() -> None:
    """Forget cached encoders (their memory is freed once no adapter object holds them)."""
    with _CACHE_LOCK:
        _CACHE.clear()


def encode_lock(encoder: Any) -> threading.Lock:
    """The lock that serialises calls into ``encoder`` (one per encoder object)."""
    with _LOCKS_LOCK:
        lock = _ENCODE_LOCKS.get(encoder)
        if lock is None:
            lock = threading.Lock()
            _ENCODE_LOCKS[encoder] = lock
        return lock

