"""The index's value types: ``ChunkRow`` (a chunk on its way in), ``Record`` (a stored chunk), ``Hit`` (a
record with a score), stable ids and vector normalisation. They import nothing else of the index."""
from __future__ import annotations

import hashlib
import json
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np


def stable_id(doc_id: str) -> int:
    """The int64 FAISS id for a string id: the first 8 bytes of BLAKE2b, kept positive."""
    digest = hashlib.blake2b(doc_id.encode("utf-8"), digest_size=8).digest()
    return int.from_bytes(digest, "big") & 0x7FFF_FFFF_FFFF_FFFF


@dataclass
class Record:
    """A stored chunk. ``metadata`` is JSON-serialisable (file chunks carry mtime, hashes, title)."""

    id: str
    text: str
    source: str = ""
    chunk: int = 0
    heading: str = ""
    page: int | None = None
    start: int = 0
    end: int = 0
    metadata: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass
class Hit(Record):
    """A search result: a record, its ``score`` and 1-based ``rank``.

    ``score`` is the cosine similarity in ``dense`` mode, the BM25 score in ``lexical`` mode and the
    fused score in ``hybrid`` mode; ``dense_score`` / ``lexical_score`` are each side's own score
    (None where that side did not return the chunk among its candidates).
    """

    score: float = 0.0
    rank: int = 0
    mode: str = "dense"
    dense_score: float | None = None
    lexical_score: float | None = None

    def json_fields(self) -> dict[str, Any]:
        """The hit as ``search --json`` prints it and ``/v1/search`` returns it (one definition for both)."""
        return {"rank": self.rank, "score": round(float(self.score), 6), "mode": self.mode,
                "dense_score": _rounded(self.dense_score), "lexical_score": _rounded(self.lexical_score),
                "source": self.source, "chunk": self.chunk, "heading": self.heading, "page": self.page,
                "start": self.start, "end": self.end, "id": self.id, "text": self.text}


def _rounded(score: float | None) -> float | None:
    return None if score is None else round(float(score), 6)


def record_from_row(row: tuple, cls: type = Record, **extra: Any) -> Record:
    """Build from a ``meta.CHUNK_COLUMNS`` row."""
    _id, doc_id, _file, source, chunk, text, heading, page, start, end, metadata = row
    return cls(id=doc_id, text=text, source=source, chunk=chunk, heading=heading, page=page, start=start,
               end=end, metadata=json.loads(metadata or "{}"), **extra)


def normalise(vectors: np.ndarray) -> np.ndarray:
    """Rows scaled to unit length (float32, C order): inner product is then cosine similarity."""
    vectors = np.asarray(vectors, dtype=np.float32)
    if vectors.ndim == 1:
        vectors = vectors[None, :]
    norms = np.linalg.norm(vectors, axis=1, keepdims=True)
    return np.ascontiguousarray(vectors / np.maximum(norms, 1e-12), dtype=np.float32)


class ChunkRow:
    """A chunk on its way into the index: what ``Index.commit`` stores and the backends mirror."""

    __slots__ = ("doc_id", "file", "source", "chunk", "text", "heading", "page", "start", "end", "metadata", "vector")

    def __init__(self, doc_id: str, text: str, vector: np.ndarray, file: str | None = None, source: str = "",
                 chunk: int = 0, heading: str = "", page: int | None = None, start: int = 0, end: int = 0,
                 metadata: dict[str, Any] | None = None) -> None:
        self.doc_id, self.text, self.vector, self.file, self.source = doc_id, text, vector, file, source
        self.chunk, self.heading, self.page, self.start, self.end = chunk, heading, page, start, end
        self.metadata = metadata or {}
