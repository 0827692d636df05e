"""Index folders of documents for retrieval: walk, read, chunk, embed, store (FAISS + SQLite), search.

``Index`` is the entry point; the modules hold one concern each: ``ingest``
(walking), ``readers`` (formats), ``chunk``, ``store`` (FAISS), ``meta``
(SQLite), ``lock``, ``sync`` (incremental indexing) and ``records``.
"""
from __future__ import annotations

from .index import DEFAULT_INDEX_DIR, Index
from .records import Hit, Record
from .sync import SyncReport

__all__ = ["DEFAULT_INDEX_DIR", "Hit", "Index", "Record", "SyncReport"]
