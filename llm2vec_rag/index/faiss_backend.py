"""The FAISS backend: an in-memory FAISS index, snapshotted to ``vectors-<g>.faiss`` on save.

Snapshots are written to a new generation file and renamed into place before
SQLite records the generation, so a killed run leaves either the old snapshot
(stale: rebuilt from SQLite) or the new one, never half a file.
"""
from __future__ import annotations

import json
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

import numpy as np

from . import store
from .backend import SnapshotMoved, VectorBackend
from .records import normalise
from .faults import crash_point
from .records import stable_id

if TYPE_CHECKING:  # pragma: no cover
    from .index import Index
    from .records import ChunkRow


class FaissBackend(VectorBackend):
    name = "faiss"

    def __init__(self, index: Index) -> None:
        super().__init__(index)
        self._faiss: Any = None
        self._factory = ""
        self._dirty = False
        self._needs_rebuild = False
        self._state: tuple | None = None  # (rows_version, generation, ...) a reader's copy matches
        self._said_behind = False
        self._gone: int | None = None  # the generation a reader last found removed (searched again once)

    # ------------------------------------------------------------------ state
    @property
    def pending(self) -> bool:
        return self._dirty or self._needs_rebuild

    def mark_stale(self) -> None:
        self._needs_rebuild = True
        self._dirty = True

    def mark_dirty(self) -> None:
        self._dirty = True

    def faiss_index(self) -> Any:
        """The live FAISS index, loaded from its snapshot or rebuilt from SQLite.

        A reader (not writable) checks at every call that its copy matches the committed state
        it reads (``rows_version`` and FAISS generation, read inside the caller's SQLite read
        snapshot, see ``MetaStore.read_snapshot``) and follows when a writer committed more.
        """
        if not self.index.writable:
            return self._reader_view()
        if self._faiss is not None and not self._needs_rebuild:
            return self._faiss
        if self._faiss is None and not self._needs_rebuild:
            self._faiss = self._load()
        if self._faiss is None or self._needs_rebuild:
            self._rebuild()
        return self._faiss

    def _reader_view(self) -> Any:
        ix = self.index
        info = ix.meta.info()
        state = (info.get("rows_version"), info.get("faiss_generation"), info.get("faiss_rows_version"),
                 info.get("index_type"))
        if self._faiss is not None and state == self._state:
            return self._faiss
        ix.info = info
        self._faiss, self._needs_rebuild = self._load(), False
        if self._faiss is None:
            self._rebuild()
        self._state = state
        return self._faiss

    def count(self) -> int:
        return int(self.faiss_index().ntotal)

    def _load(self) -> Any:
        """The FAISS snapshot when it matches SQLite; None (rebuild) when it is missing or stale."""
        ix = self.index
        info = ix.meta.info()
        ix.info = info
        generation = int(info.get("faiss_generation", 0))
        path = ix.store_path / f"vectors-{generation}.faiss"
        count = ix.meta.count()
        current = info.get("faiss_rows_version") == info.get("rows_version")
        if generation and current:
            try:
                faiss_index = store.read_index(path, info.get("faiss_checksum")) if path.is_file() else None
            except FileNotFoundError:  # removed between the check and the read
                faiss_index = None
            except Exception as exc:
                ix.log(f"warning: {path.name} is unreadable ({store.faiss_message(exc)[:100]}); "
                        "rebuilding it from the stored vectors")
                self._dirty = True  # a writer saves a good snapshot, even with nothing else to change
                return None
            if faiss_index is None:
                self._replaced(generation)
            elif faiss_index.ntotal == count and faiss_index.d == ix.dim:
                self._factory = str(info.get("faiss_factory", ""))
                return store.to_gpu(faiss_index) if not ix.writable else faiss_index
        if count or generation:
            if ix.writable:  # the writer holds the lock: nobody else is writing, so a run was cut short
                ix.log("note: the FAISS file does not match the metadata (an interrupted run?): "
                        "rebuilding it from the stored vectors")
            elif current:
                ix.log(f"note: {path.name} is missing or does not match the stored chunks: rebuilding it in "
                        "memory from the stored vectors (the next `llm2vec-rag index` run writes it)")
            elif not self._said_behind:
                self._said_behind = True
                ix.log("note: the FAISS file is behind the stored chunks (an update is running, or one was "
                        "interrupted): searching a copy built from the stored vectors")
            self._dirty = True
        return None

    def _replaced(self, generation: int) -> None:
        """A reader's snapshot names a FAISS file that is gone: a writer saved a newer one since the
        snapshot began and removed it. Search again in a new snapshot, once per generation (gone
        there too: it is really missing, and the caller rebuilds a copy, with a note)."""
        ix = self.index
        if not ix.writable and ix.meta.conn.in_transaction and generation != self._gone:
            self._gone = generation
            raise SnapshotMoved(f"the index at {ix.path} kept changing during the search: search again")

    def reconcile(self) -> None:
        """Bring the FAISS file in line with SQLite and drop stray files."""
        ix = self.index
        info = ix.info
        current = ix.store_path / f"vectors-{int(info.get('faiss_generation', 0))}.faiss"
        bad = current.is_file() and not store.checksum_matches(current, info.get("faiss_checksum"))
        if bad:
            ix.log(f"warning: {current.name} does not match its checksum (damaged on disk): "
                    "rebuilding it from the stored vectors")
            self.mark_stale()
        if bad or info.get("faiss_rows_version") != info.get("rows_version") or \
                (ix.meta.count() and not current.is_file()):
            self.faiss_index()
            self.save()
        keep = ix.store_path / f"vectors-{int(ix.info.get('faiss_generation', 0))}.faiss"
        for stray in ix.store_path.glob("vectors-*.faiss*"):
            if stray != keep:
                stray.unlink(missing_ok=True)

    def _rebuild(self) -> None:
        ix = self.index
        n = ix.meta.count()
        factory = store.factory_string(ix.index_type, ix.dim, n)
        faiss_index, self._factory = store.build_index(
            factory, ix.dim, lambda: ix.meta.iter_vectors(ix.dim), n,
            lambda m: ix.meta.sample_vectors(m, ix.dim), log=ix.log,
        )
        self._faiss = store.to_gpu(faiss_index) if not ix.writable else faiss_index
        self._needs_rebuild = False

    def _should_retrain(self) -> bool:
        ix = self.index
        if self._factory != "Flat" or ix.index_type == "flat":
            return False
        n = ix.meta.count()
        target = store.factory_string(ix.index_type, ix.dim, n)
        return target != "Flat" and n >= store.min_training_points(target) > 0

    # ------------------------------------------------------------------ writing
    def prepare(self) -> None:
        self.faiss_index()  # from the snapshot that matches SQLite before this write

    def apply(self, rows: Sequence[ChunkRow], removed: Sequence[int]) -> None:
        faiss_index = self.faiss_index()
        if removed and not self._needs_rebuild and not store.remove_ids(faiss_index, removed):
            self._needs_rebuild = True
        if rows and not self._needs_rebuild:
            ids = np.fromiter((stable_id(r.doc_id) for r in rows), dtype=np.int64, count=len(rows))
            faiss_index.add_with_ids(normalise(np.stack([r.vector for r in rows])), ids)
        self._dirty = True

    def save(self) -> None:
        """Write the FAISS snapshot (new generation, atomic) and record it in SQLite."""
        if not self.pending:
            return
        ix = self.index
        faiss_index = self.faiss_index()
        if self._should_retrain():
            ix.log(f"note: {len(ix)} vectors: training the {ix.index_type} index now")
            self._rebuild()
            faiss_index = self._faiss
        generation = int(ix.meta.info().get("faiss_generation", 0)) + 1
        target = ix.store_path / f"vectors-{generation}.faiss"
        checksum = store.write_atomic(faiss_index, target, before_rename=lambda: crash_point("faiss-tmp"))
        crash_point("faiss-renamed")
        with ix.meta.transaction() as conn:
            rows_version = json.loads(conn.execute("SELECT value FROM info WHERE key='rows_version'").fetchone()[0])
            ix.meta.set_info({"faiss_generation": generation, "faiss_rows_version": rows_version,
                              "faiss_factory": self._factory, "faiss_checksum": checksum}, conn)
        crash_point("generation")
        ix.info = ix.meta.info()
        for old in ix.store_path.glob("vectors-*.faiss*"):
            if old != target:
                old.unlink(missing_ok=True)
        self._dirty = False

    # ------------------------------------------------------------------ reading
    def search(self, queries: np.ndarray, k: int, allowed: np.ndarray | None) -> tuple[np.ndarray, np.ndarray]:
        faiss_index = self.faiss_index()
        if faiss_index.ntotal == 0:
            return np.zeros((len(queries), 0), np.float32), np.zeros((len(queries), 0), np.int64)
        return store.search(faiss_index, queries, min(k, faiss_index.ntotal), allowed)

    def describe(self) -> dict[str, Any]:
        return {"backend": self.name, "faiss_factory": self.index.info.get("faiss_factory", self._factory)}


def wipe(folder) -> None:
    for path in folder.glob("vectors-*.faiss*"):
        path.unlink(missing_ok=True)
