"""Where llm2vec-rag keeps what it computes once (converted GGUF weights, merged adapters, the dtype
choice, evaluation embeddings). At the bottom of the package: it imports nothing of it."""
from __future__ import annotations

import os
from pathlib import Path

CACHE_ENV = "LLM2VEC_RAG_CACHE"


def cache_dir() -> Path:
    """The cache root: ``$LLM2VEC_RAG_CACHE`` or ``~/.cache/llm2vec-rag``."""
    root = os.environ.get(CACHE_ENV)
    path = Path(root).expanduser() if root else Path.home() / ".cache" / "llm2vec-rag"
    return path
