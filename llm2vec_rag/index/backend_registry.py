"""Which class serves each backend name. The backends import ``backend.py`` (the interface), never
each other or this module, so a new vector engine is a module plus one entry here."""
from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING

from .backend import VectorBackend, validate_backend

if TYPE_CHECKING:  # pragma: no cover
    from .index import Index


def _faiss(index: Index) -> VectorBackend:
    from .faiss_backend import FaissBackend

    return FaissBackend(index)


def _qdrant(index: Index) -> VectorBackend:  # qdrant-client is imported only for an index that uses it
    from .qdrant_backend import QdrantBackend

    return QdrantBackend(index)


FACTORIES: dict[str, Callable[[Index], VectorBackend]] = {"faiss": _faiss, "qdrant": _qdrant}


def make_backend(index: Index) -> VectorBackend:
    """The backend recorded in the index's settings (``faiss`` for indexes from before backends)."""
    return FACTORIES[validate_backend(str(index.info.get("backend", "faiss")))](index)
