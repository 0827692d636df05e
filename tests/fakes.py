"""A deterministic stand-in encoder for index, search and CLI tests.

Texts become normalised bags of hashed words (with light suffix stripping), so
texts that share words really are close: retrieval behaves like a tiny BM25-ish
model without any weights. ``make_fake_encoder`` is the factory the CLI test
hook calls for ``--model fake:<dim>``.
"""
from __future__ import annotations

import hashlib
import re
from collections.abc import Sequence
from typing import Any

import numpy as np

FACTORY = "fakes:make_fake_encoder"
STOP = {"the", "a", "an", "of", "to", "and", "is", "in", "on", "for", "how", "do", "i", "my", "what", "it", "with"}


class WhitespaceTokenizer:
    """The part of a Hugging Face tokenizer the chunker uses: ids and character offsets, one per word."""

    def __call__(self, text: str | list[str], add_special_tokens: bool = False, return_offsets_mapping: bool = False):
        if isinstance(text, list):
            return {"input_ids": [self(t)["input_ids"] for t in text]}
        spans = [m.span() for m in re.finditer(r"\S+", text)]
        out: dict[str, Any] = {"input_ids": list(range(len(spans)))}
        if return_offsets_mapping:
            out["offset_mapping"] = spans
        return out


def _words(text: str) -> list[str]:
    words = [w for w in re.findall(r"[a-z0-9]+", text.lower()) if w not in STOP]
    return [re.sub(r"(ing|ed|es|s)$", "", w) if len(w) > 4 else w for w in words]


class FakeEncoder:
    """Bag-of-hashed-words vectors; the same interface the index uses from ``LLM2Vec``."""

    def __init__(self, dim: int = 64, name: str = "fake", salt: str = "") -> None:
        self.dim = dim
        self.name = name
        self.salt = salt
        self.pooling_mode = "mean"
        self.query_instruction = "Given a question, retrieve passages that answer it:"
        self.document_instruction = ""
        self.max_length = 512
        self.tokenizer = WhitespaceTokenizer()
        self.calls = 0  # texts embedded so far, for "only changed files are embedded" tests

    def fingerprint(self) -> str:
        return hashlib.sha256(f"fake:{self.dim}:{self.salt}".encode()).hexdigest()[:16]

    def _vector(self, text: str) -> np.ndarray:
        v = np.zeros(self.dim, dtype=np.float32)
        for w in _words(text):
            h = int.from_bytes(hashlib.md5((self.salt + w).encode()).digest()[:4], "little")
            v[h % self.dim] += 1.0 if (h >> 31) & 1 == 0 else 0.8
        n = np.linalg.norm(v)
        return v / n if n else v

    def encode(self, texts: Sequence[Any], batch_size: int = 32, show_progress_bar: Any = None,
               normalize_embeddings: bool = False, convert_to_numpy: bool = True, **_: Any) -> np.ndarray:
        single = isinstance(texts, str)
        items = [texts] if single else list(texts)
        plain = [t[1] if isinstance(t, (list, tuple)) else t for t in items]  # instruction is not pooled
        self.calls += len(plain)
        out = np.stack([self._vector(t) for t in plain]) if plain else np.zeros((0, self.dim), np.float32)
        return out[0] if single else out

    def encode_queries(self, queries: Any, instruction: str | None = None, **options: Any) -> np.ndarray:
        return self.encode(queries, **options)

    def encode_documents(self, documents: Any, **options: Any) -> np.ndarray:
        return self.encode(documents, **options)


def make_fake_encoder(spec: str = "fake:") -> FakeEncoder:
    """``fake:`` -> 64-d; ``fake:32`` -> 32-d; ``fake:64:other`` -> a different model of the same size."""
    parts = spec.split(":")
    dim = int(parts[1]) if len(parts) > 1 and parts[1] else 64
    salt = parts[2] if len(parts) > 2 else ""
    return FakeEncoder(dim=dim, name=spec, salt=salt)


def whitespace_count(text: str) -> int:
    return len(text.split())
