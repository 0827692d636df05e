"""Where the vectors are searched: one interface, a FAISS file beside SQLite or a Qdrant collection.

SQLite (``meta.py``) stays the source of truth for files, chunks and their vectors
on every backend; a backend is a search structure kept in step with it. Each
write is first committed to SQLite, then applied to the backend; a backend
records the ``rows_version`` it has caught up with, so an interrupted run is
repaired from SQLite on the next open (never by re-embedding).
"""
from __future__ import annotations

import hashlib
import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from ..errors import LLM2VecError

if TYPE_CHECKING:  # pragma: no cover
    from .index import Index
    from .records import ChunkRow

BACKENDS = ("faiss", "qdrant")
QDRANT_TYPES = ("flat", "hnsw", "sq8")



class SnapshotMoved(LLM2VecError):
    """A reader's snapshot names a FAISS file that a writer has since replaced and removed.

    Not a failure: the search runs again in a new snapshot, which names the new file
    (see ``Index`` searches); it only reaches a caller when that keeps happening.
    """


class VectorBackend:
    """What ``Index`` needs from a vector engine (see ``FaissBackend`` and ``QdrantBackend``)."""

    name = ""

    def __init__(self, index: Index) -> None:
        self.index = index

    def reconcile(self) -> None:
        """A writer opened the index: catch up with SQLite after an interrupted run."""

    def mark_stale(self) -> None:
        """Settings changed (index type, backend): rebuild from the stored vectors on next use."""

    def prepare(self) -> None:
        """Called before a write's SQLite transaction: load what ``apply`` will change."""

    def apply(self, rows: Sequence[ChunkRow], removed: Sequence[int]) -> None:
        """Mirror one committed SQLite change: ``removed`` ids are gone, ``rows`` are new or replaced."""
        raise NotImplementedError

    def search(self, queries: np.ndarray, k: int, allowed: np.ndarray | None) -> tuple[np.ndarray, np.ndarray]:
        """Top-k (scores, ids) per query row (cosine), only among ``allowed`` ids when given; -1 pads."""
        raise NotImplementedError

    def count(self) -> int:
        raise NotImplementedError

    @property
    def pending(self) -> bool:
        """Changes not yet made durable by :meth:`save`."""
        return False

    def save(self) -> None:
        """Make applied changes durable and record the ``rows_version`` they match."""

    def drop(self) -> None:
        """The index is being started over (``--rebuild``): remove what lives outside its folder."""

    def close(self) -> None:
        """Release connections and files (the index is closing)."""

    def describe(self) -> dict[str, Any]:
        """Settings for ``stats()``."""
        return {"backend": self.name}


def validate_backend(name: str) -> str:
    name = (name or "faiss").lower()
    if name not in BACKENDS:
        raise LLM2VecError(f"unknown backend {name!r}: use {' or '.join(BACKENDS)}")
    return name


def check_index_type(backend: str, index_type: str, dim: int | None = None) -> None:
    """Reject an index type the backend cannot build, now rather than after the embedding."""
    if backend == "qdrant":
        if index_type not in QDRANT_TYPES:
            raise LLM2VecError(f"index type {index_type!r} is not available with the qdrant backend: "
                               f"use {', '.join(QDRANT_TYPES)}")
        return
    from .store import validate_index_type

    validate_index_type(index_type, dim)


def default_collection(folder: Path) -> str:
    """A collection name that differs between index folders sharing one Qdrant server."""
    folder = Path(folder).expanduser().resolve()
    digest = hashlib.blake2b(os.fsencode(folder), digest_size=4).hexdigest()  # any path, UTF-8 or not
    stem = "".join(ch if ch.isalnum() else "-" for ch in folder.name.strip(".")).strip("-") or "index"
    return f"llm2vec-rag-{stem}-{digest}"


def backend_settings(backend: str | None, url: str | None, collection: str | None, folder: Path,
                     info: Mapping[str, Any]) -> dict[str, Any]:
    """The settings to record that differ from ``info`` (empty: keep the index as it is)."""
    current = str(info.get("backend", "faiss"))
    if backend is None and url is None and collection is None:
        return {}
    name = validate_backend(backend or ("qdrant" if url or collection else current))
    if name == "faiss":
        if url or collection:
            raise LLM2VecError("--url and --collection are settings of the qdrant backend (add --backend qdrant)")
        return {"backend": "faiss"} if current != "faiss" else {}
    same = current == "qdrant"
    wanted = {
        "backend": "qdrant",
        "qdrant_url": url if url is not None else (info.get("qdrant_url") if same else None),
        "qdrant_collection": collection or (info.get("qdrant_collection") if same else None)
        or default_collection(folder),
    }
    if wanted["qdrant_url"] is not None and not str(wanted["qdrant_url"]).startswith(("http://", "https://", "file://")):
        raise LLM2VecError(f"--url must be a Qdrant server address like http://localhost:6333 (or file:///folder for "
                           f"a local-mode folder), not {url!r}")
    return {k: v for k, v in wanted.items() if info.get(k) != v}
