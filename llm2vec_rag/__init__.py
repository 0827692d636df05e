"""llm2vec-rag: turn any decoder-only LLM into a text encoder (LLM2Vec) and use it for retrieval.

Heavy imports (torch, transformers, faiss) happen on first use of a name.
"""
from __future__ import annotations

from typing import TYPE_CHECKING, Any

__version__ = "0.1.0"
__all__ = ["LLM2Vec", "Index", "__version__"]

if TYPE_CHECKING:  # pragma: no cover
    from .encoder import LLM2Vec
    from .index import Index


def __getattr__(name: str) -> Any:
    if name == "LLM2Vec":
        from .encoder import LLM2Vec

        return LLM2Vec
    if name == "Index":
        from .index import Index

        return Index
    raise AttributeError(f"module 'llm2vec_rag' has no attribute {name!r}")
