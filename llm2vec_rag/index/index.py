"""The ``Index`` class: a FAISS index plus SQLite metadata in one directory.

Layout of an index directory (default ``./.llm2vec-rag``)::

    meta.sqlite        settings, files, chunks and their vectors (the source of truth)
    vectors-<g>.faiss  the FAISS snapshot of generation g (rebuilt from SQLite when stale)
    write.lock         held (flock) by the one process allowed to write
"""
from __future__ import annotations

import fnmatch
import functools
import json
import os
import sqlite3
import sys
import time
import uuid
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import IndexModelMismatchError, IndexNotFoundError, LLM2VecError
from .backend import SnapshotMoved, VectorBackend, backend_settings, check_index_type
from .backend_registry import make_backend
from . import lexical
from .faults import crash_point
from .ingest import valid_text
from .hybrid import SearchSettings, fuse, single
from . import rebuild as rebuild_staging
from .lock import LOCK_FILE, WriteLock
from .meta import FORMAT_VERSION, META_FILE, MetaStore, database_error
from .model import encoder_record, load_encoder, load_options
from .records import ChunkRow, Hit, Record, normalise, record_from_row, stable_id

DEFAULT_INDEX_DIR = ".llm2vec-rag"
Where = str | Mapping[str, Any] | Callable[[dict[str, Any]], bool] | None


SNAPSHOT_TRIES = 3


def _read_snapshot(method: Callable[..., Any]) -> Callable[..., Any]:
    """Run a search inside one SQLite read transaction: the rows, the lexical table and the FAISS
    copy it uses are all of one committed state, whatever a writer commits meanwhile.

    When a writer has replaced (and removed) the FAISS file the snapshot names, the search runs
    again in a new snapshot: the writer's newer committed state, with its file.
    """

    @functools.wraps(method)
    def in_snapshot(self: Index, *args: Any, **kwargs: Any) -> Any:
        for tries_left in range(SNAPSHOT_TRIES - 1, -1, -1):
            try:
                with self.meta.read_snapshot():
                    return method(self, *args, **kwargs)
            except SnapshotMoved:
                if not tries_left or self.meta.conn.in_transaction:  # nested: the outer snapshot searches again
                    raise
            except sqlite3.DatabaseError as exc:  # corrupt pages, I/O errors: one line, with the index's path
                raise database_error(exc, self.meta.path) from None

    return in_snapshot



class Index:
    """A searchable index of text chunks, embedded with one LLM2Vec encoder.

    Build and search::

        from llm2vec_rag import Index
        index = Index.build("docs/", path=".llm2vec-rag")       # embeds with smollm2-135m
        for hit in index.search("how do I fine-tune?", k=5):
            print(hit.score, hit.source, hit.heading, hit.text[:80])
        index.close()

    Open later (the recorded model is loaded on first ``search``)::

        index = Index.load(".llm2vec-rag")

    Vector-store style API (used by the LangChain / LlamaIndex stores):

    * ``add_texts(texts, metadatas=None, ids=None) -> list[str]``: embed and store
      (an existing id is replaced); ids are strings, FAISS ids are int64 derived from them;
    * ``delete(ids) -> int``, ``get_by_ids(ids) -> list[Record]``, ``get_vectors(ids) -> ndarray``;
    * ``search(query, k=10, where=None, instruction=None) -> list[Hit]`` and
      ``search_by_vector(vector, k=10, where=None) -> list[Hit]``; ``len(index)``.

    ``where`` filters before ranking: a path glob (``"*.md"``, ``"guide/*"``, a folder
    prefix), a dict of equalities on ``source``/``chunk``/``heading``/``page``/``id`` or
    metadata keys (a list value means "any of"), or a callable on the metadata dict.
    ``Hit``/``Record`` carry ``id, text, source, chunk, heading, page, start, end,
    metadata`` (``Hit`` adds ``score``, cosine similarity, and ``rank``).

    Writes (``add_texts``, ``delete``, ``update``) are committed to SQLite at once
    and reach the FAISS file on ``save()`` or ``close()``; one process writes at a time.
    """

    def __init__(self, path: Path, meta: MetaStore, encoder: Any = None, lock: WriteLock | None = None,
                 log: Callable[[str], None] | None = None, encoder_options: dict[str, Any] | None = None) -> None:
        self.path = Path(path)
        self.meta = meta
        self._encoder = encoder
        self._lock = lock
        self.log = log or (lambda message: print(message, file=sys.stderr))
        self._encoder_options = dict(encoder_options or {})
        self.info = meta.info()
        self._backend: VectorBackend | None = None
        self.store_path = self.path  # where meta.sqlite and the FAISS files are: a staging folder during --rebuild
        self._staged = False  # a --rebuild built beside the live index, swapped in by close()
        self._replaced: dict[str, Any] | None = None  # the live index's settings a staged rebuild replaces
        self._said_dense_only = False  # the note that an old read-only index cannot search lexically

    # ------------------------------------------------------------------ opening
    @classmethod
    def create(cls, path: str | os.PathLike[str] = DEFAULT_INDEX_DIR, encoder: Any = None, *,
               model: str | None = None, adapters: Sequence[str] = (), index_type: str = "flat",
               query_instruction: str | None = None, overwrite: bool = False,
               log: Callable[[str], None] | None = None, backend: str | None = None, url: str | None = None,
               collection: str | None = None, **encoder_options: Any) -> Index:
        """A new, empty, writable index (``overwrite`` replaces an existing one)."""
        folder = Path(path).expanduser()
        if (folder / META_FILE).exists() and not overwrite:
            raise LLM2VecError(f"an index already exists at {folder}; use Index.load or overwrite=True")
        return cls.open(folder, encoder, model=model, adapters=adapters, index_type=index_type,
                        query_instruction=query_instruction, rebuild=True, log=log, backend=backend, url=url,
                        collection=collection, **encoder_options)

    @classmethod
    def load(cls, path: str | os.PathLike[str] = DEFAULT_INDEX_DIR, encoder: Any = None, *, writable: bool = False,
             log: Callable[[str], None] | None = None, **encoder_options: Any) -> Index:
        """An existing index; the recorded model is loaded when a search needs it (unless ``encoder``)."""
        folder = Path(path).expanduser()
        if not _has_index(folder):
            hint = "run `llm2vec-rag index FOLDER` first" if folder.name == DEFAULT_INDEX_DIR else \
                f"run `llm2vec-rag index FOLDER --index {path}` first"
            raise IndexNotFoundError(f"no index at {folder}: {hint}")
        lock = None
        if writable:
            lock = WriteLock(folder)
            lock.acquire()
        try:
            index = cls(folder, MetaStore(folder / META_FILE), None, lock, log, encoder_options)
            if writable:
                rebuild_staging.discard_staging(folder, index.log)
            if encoder is not None:
                index._check_encoder(encoder)
                index._encoder = encoder
        except BaseException:
            if lock:
                lock.release()
            raise
        return index

    @classmethod
    def open(cls, path: str | os.PathLike[str] = DEFAULT_INDEX_DIR, encoder: Any = None, *, model: str | None = None,
             adapters: Sequence[str] = (), index_type: str | None = None, query_instruction: str | None = None,
             rebuild: bool = False, log: Callable[[str], None] | None = None, backend: str | None = None,
             url: str | None = None, collection: str | None = None, **encoder_options: Any) -> Index:
        """Open for writing, creating the index when missing; takes the write lock before loading a model.

        With neither ``encoder`` nor ``model``, an existing index reloads the model it recorded;
        a different model is an error unless ``rebuild`` (which starts the index over).
        ``backend`` is ``faiss`` (default) or ``qdrant`` (``url`` of a server, else a local
        collection inside the index folder; ``collection`` names it). Switching the backend or
        the index type of an existing index rebuilds the vectors' side from SQLite, no re-embedding.
        """
        folder = Path(path).expanduser()
        if folder.exists() and not folder.is_dir():
            raise LLM2VecError(f"--index {folder} is a file, not a directory")
        # what this call creates is removed again if opening fails: no lone write.lock, no empty meta.sqlite
        created = _first_missing(folder)
        fresh, had_lock = not _has_index(folder), (folder / LOCK_FILE).exists()
        folder.mkdir(parents=True, exist_ok=True)
        lock = WriteLock(folder)
        try:
            lock.acquire()
        except OSError:  # a full disk (not another writer: that one is an IndexLockedError)
            _remove_created(folder, created, fresh, had_lock)
            raise
        target = {"backend": backend, "url": url, "collection": collection}
        try:
            exists = _has_index(folder)
            if exists and not rebuild:
                index = cls(folder, MetaStore(folder / META_FILE), None, lock, log, encoder_options)
                index._reopen(encoder, model, adapters, index_type, query_instruction, target)
                return index
            return cls._create(folder, lock, exists, encoder, model, adapters, index_type, query_instruction,
                               target, log, encoder_options)
        except BaseException:
            lock.release()
            _remove_created(folder, created, fresh, had_lock)
            raise

    def _reopen(self, encoder: Any, model: str | None, adapters: Sequence[str], index_type: str | None,
                query_instruction: str | None, target: dict[str, Any]) -> None:
        """``open`` of an existing index: check (and load) the model, apply changed settings, catch up."""
        meta, folder = self.meta, self.path
        changes = backend_settings(target["backend"], target["url"], target["collection"], folder, self.info)
        new_type = index_type if index_type is not None else self.info.get("index_type", "flat")
        if changes or new_type != self.info.get("index_type"):  # checked before a model loads
            check_index_type(changes.get("backend", self.info.get("backend", "faiss")), new_type, int(self.info["dim"]))
        if encoder is None and model is not None:
            encoder = load_encoder(model, adapters, **load_options(self._encoder_options))
        if encoder is not None:  # else the recorded model, loaded when something needs embedding
            self._check_encoder(encoder)
            self._encoder = encoder
        if changes or new_type != self.info.get("index_type"):
            if index_type is not None and index_type != self.info.get("index_type"):
                self.log(f"note: changing the index type from {self.info.get('index_type')} to "
                         f"{index_type}: rebuilding the vector index from the stored vectors (no re-embedding)")
            if changes:
                self.log(f"note: moving the vectors to {_describe_target(changes, self.info)}: "
                         "copying them from the stored vectors (no re-embedding)")
                _drop_backend(self)  # the old place: its points (Qdrant) are taken out
                self._backend = None
                _wipe_faiss(folder)
            with meta.transaction() as conn:
                meta.set_info({**changes, "index_type": new_type, "backend_rows_version": -1,
                               "faiss_rows_version": -1}, conn)
            self.info = meta.info()
            self.backend.mark_stale()
        if query_instruction is not None and query_instruction != self.info.get("query_instruction"):
            with meta.transaction() as conn:
                meta.set_info({"query_instruction": query_instruction}, conn)
            self.info = meta.info()
        rebuild_staging.discard_staging(folder, self.log)  # an unfinished --rebuild nobody resumed
        self.backend.reconcile()

    @classmethod
    def _create(cls, folder: Path, lock: WriteLock, exists: bool, encoder: Any, model: str | None,
                adapters: Sequence[str], index_type: str | None, query_instruction: str | None,
                target: dict[str, Any], log: Callable[[str], None] | None, encoder_options: dict[str, Any]) -> Index:
        """``open`` of a new index, or ``rebuild`` of an existing one.

        Everything is checked (settings, index type at the real dimension, the model) before
        anything on disk changes: a bad --rebuild leaves the old index as it was.
        """
        kind = index_type or "flat"
        settings = {"backend": "faiss",
                    **backend_settings(target["backend"], target["url"], target["collection"], folder, {})}
        check_index_type(settings["backend"], kind)
        if encoder is None:
            encoder = load_encoder(model or _default_model(), adapters, **load_options(encoder_options))
        check_index_type(settings["backend"], kind, int(encoder.dim))
        record = encoder_record(encoder, model, adapters)
        if query_instruction is not None:
            record["query_instruction"] = query_instruction
        wanted = {**record, **settings, "index_type": kind}
        old = rebuild_staging.live_info(folder) if exists else None
        staged = old is not None and settings["backend"] == "faiss"
        resumed = False
        if staged:  # built beside the live index, which keeps answering searches; swapped in by close()
            meta, resumed = rebuild_staging.open_staging(folder, wanted, log or _stderr)
        else:  # nothing readable to keep, or a Qdrant target (old points are dropped first)
            if exists:
                _drop_outside(cls, folder, lock, log)
            _wipe(folder)
            rebuild_staging.discard_staging(folder, lambda m: None)
            meta = MetaStore(folder / META_FILE, create=True)
        if not resumed:
            with meta.transaction() as conn:
                meta.set_info({**wanted, "format": FORMAT_VERSION, "index_uuid": uuid.uuid4().hex,
                               "created_at": time.time(), "rows_version": 0,
                               "faiss_generation": int(old.get("faiss_generation", 0)) if staged else 0,
                               "faiss_rows_version": -1, "backend_rows_version": -1}, conn)
        index = cls(folder, meta, encoder, lock, log, encoder_options)
        if staged:
            index.store_path, index._staged = meta.path.parent, True
            index._replaced = old
        index.backend.mark_stale()
        return index

    @classmethod
    def build(cls, folder: str | os.PathLike[str], path: str | os.PathLike[str] = DEFAULT_INDEX_DIR,
              encoder: Any = None, **options: Any) -> Index:
        """Open (or create) the index at ``path``, bring it up to date with ``folder``, save; returns it.

        ``options`` go to :meth:`open` (model, index_type, rebuild, ...) and :meth:`update`
        (include, exclude, chunk_tokens, overlap, ...); the report is ``index.last_report``.
        """
        from .sync import UPDATE_OPTIONS, check_update

        update_options = {k: options.pop(k) for k in list(options) if k in UPDATE_OPTIONS}
        if update_options.get("walked") is None:  # the folder and options, before anything is created
            update_options["walked"] = check_update(folder, Path(path).expanduser(),
                                                    rebuild=bool(options.get("rebuild")), **update_options)
        index = cls.open(path, encoder, **options)
        try:
            index.update(folder, **update_options)
        except BaseException:
            index.abort()
            raise
        return index

    # ------------------------------------------------------------------ properties
    @property
    def encoder(self) -> Any:
        """The encoder, loading the one recorded in the index on first use."""
        if self._encoder is None:
            args = self.encoder_arguments
            try:
                encoder = load_encoder(args.pop("model"), args.pop("adapters", ()), **args)
            except LLM2VecError as exc:
                raise LLM2VecError(f"cannot load the model this index was built with: {exc}") from None
            self._check_encoder(encoder)
            self._encoder = encoder
        return self._encoder

    @property
    def loaded_encoder(self) -> Any:
        """The encoder if it is loaded already, else None (loads nothing)."""
        return self._encoder

    @property
    def encoder_arguments(self) -> dict[str, Any]:
        """How to load the recorded encoder (``model``, ``adapters``, settings), with the load options
        this index was opened with (``dtype``, ``device``, ...) over the recorded ones."""
        args = dict(self.info.get("model_args") or {"model": self.info.get("model")})
        return {**args, **load_options(self._encoder_options)}

    @property
    def dim(self) -> int:
        return int(self.info["dim"])

    @property
    def index_type(self) -> str:
        return str(self.info.get("index_type", "flat"))

    @property
    def query_instruction(self) -> str:
        return str(self.info.get("query_instruction", ""))

    @property
    def log(self) -> Callable[[str], None]:
        """Where the index's notes and warnings go (``log=`` when opened, else stderr).

        Settable: an update with a progress bar routes them through the bar, each on its own line.
        """
        return self._log

    @log.setter
    def log(self, log: Callable[[str], None]) -> None:
        self._log = log

    @property
    def writable(self) -> bool:
        return self._lock is not None and self._lock.held

    def __len__(self) -> int:
        return self.meta.count()

    def __enter__(self) -> Index:
        return self

    def __exit__(self, *exc: Any) -> None:
        if exc and exc[0] is not None:
            self.abort()
        else:
            self.close()

    def __repr__(self) -> str:
        return (f"Index(path={str(self.path)!r}, chunks={len(self)}, model={self.info.get('model')!r}, "
                f"type={self.index_type!r})")

    def _check_encoder(self, encoder: Any) -> None:
        want_fp, want_dim = self.info.get("fingerprint"), int(self.info.get("dim", 0))
        got_fp, got_dim = str(encoder.fingerprint()), int(encoder.dim)
        if got_fp != want_fp or got_dim != want_dim:
            raise IndexModelMismatchError(
                f"the index at {self.path} was built with model {self.info.get('model')!r} "
                f"(fingerprint {want_fp}, dim {want_dim}), not {getattr(encoder, 'name', '?')!r} "
                f"(fingerprint {got_fp}, dim {got_dim}); use that model, or --rebuild to start over"
            )

    def _require_writable(self) -> None:
        if not self.writable:
            raise LLM2VecError(f"the index at {self.path} was opened read-only; use Index.load(..., writable=True)")

    # ------------------------------------------------------------------ vectors
    @property
    def backend(self) -> VectorBackend:
        """The vector engine this index searches with (FAISS or Qdrant), created on first use."""
        if self._backend is None:
            self._backend = make_backend(self)
        return self._backend

    def _faiss_index(self) -> Any:
        """The live FAISS index (FAISS backend only; for tests and tools)."""
        return self.backend.faiss_index()  # type: ignore[attr-defined]

    def save(self) -> None:
        """Make pending vector changes durable (a new FAISS snapshot; Qdrant: record the synced version).

        On an index opened with ``rebuild=True`` over an existing one, this is also where the
        complete new index replaces the old one (``update`` saves when it has finished, ``close``
        saves too); until then the old index is what everybody else sees.
        """
        if self._staged and self.writable:
            if self.backend.pending:
                self.backend.save()
            self._swap_in()
            return
        if not self.backend.pending:
            return
        self._require_writable()
        self.backend.save()

    def close(self) -> None:
        """Save pending changes (when writable) and release the write lock.

        After a ``--rebuild`` this is where the complete new index replaces the old one
        (see :mod:`llm2vec_rag.index.rebuild`); :meth:`abort` releases without swapping.
        """
        try:
            if self.writable and (self.backend.pending or self._staged):
                self.save()
        finally:
            self._release()

    def abort(self) -> None:
        """Release the index after a failed write without finishing it.

        Committed batches stay (the next run resumes from them); an unfinished ``--rebuild``
        is not swapped in: the live index stays as it was and the staged one is kept for a re-run.
        """
        if not self._staged:
            self.close()
            return
        self._release()

    def _release(self) -> None:
        """Close the backend and SQLite, then give up the write lock (whatever fails on the way)."""
        try:
            if self._backend is not None:
                self._backend.close()
        finally:
            self.meta.close()
            if self._lock is not None:
                self._lock.release()

    def _swap_in(self) -> None:
        old = None
        if self._replaced is not None and self._replaced.get("backend", "faiss") != "faiss":
            old = Index(self.path, MetaStore(self.path / META_FILE), None, self._lock, self.log)
        if self._backend is not None:
            self._backend.close()
            self._backend = None
        try:
            rebuild_staging.swap_in(self.meta, self.path)
            self._staged = False
            self.store_path = self.path
            if old is not None:  # the replaced index's points in Qdrant
                _drop_backend(old)
        finally:
            if old is not None:
                old.meta.close()
        self.meta = MetaStore(self.path / META_FILE)
        self.info = self.meta.info()

    # ------------------------------------------------------------------ writing
    def commit(self, rows: Sequence[ChunkRow] = (), remove_doc_ids: Sequence[str] = (),
               remove_files: Sequence[str] = (), file_rows: Sequence[dict[str, Any]] = ()) -> tuple[int, int]:
        """One SQLite transaction for all of it, then the same change on the vector backend.

        The low-level write that ``add_texts``, ``delete`` and folder sync share. Returns
        (chunks added, chunks removed).
        """
        self._require_writable()
        backend = self.backend
        backend.prepare()
        removed: list[int] = []
        crash_point("embedded")
        try:
            with self.meta.transaction() as conn:
                for path in remove_files:
                    removed += self.meta.ids_for_file(conn, path)
                    conn.execute("DELETE FROM chunks WHERE file = ?", (path,))
                    conn.execute("DELETE FROM files WHERE path = ?", (path,))
                for part in _parts(list(remove_doc_ids)):
                    q = ",".join("?" * len(part))
                    removed += [r[0] for r in conn.execute(f"SELECT id FROM chunks WHERE doc_id IN ({q})", part)]
                    conn.execute(f"DELETE FROM chunks WHERE doc_id IN ({q})", part)
                for f in file_rows:
                    removed += self.meta.ids_for_file(conn, f["path"])
                    conn.execute("DELETE FROM chunks WHERE file = ?", (f["path"],))
                    conn.execute(
                        "INSERT INTO files(path, root, rel, size, mtime_ns, content_hash, settings, chunks, indexed_at)"
                        " VALUES (:path, :root, :rel, :size, :mtime_ns, :content_hash, :settings, :chunks, :indexed_at)"
                        " ON CONFLICT(path) DO UPDATE SET root=excluded.root, rel=excluded.rel, size=excluded.size,"
                        " mtime_ns=excluded.mtime_ns, content_hash=excluded.content_hash, settings=excluded.settings,"
                        " chunks=excluded.chunks, indexed_at=excluded.indexed_at", f)
                conn.executemany(
                    "INSERT INTO chunks(id, doc_id, file, source, chunk, text, heading, page, start_char, end_char,"
                    " metadata, vector) VALUES (?,?,?,?,?,?,?,?,?,?,?,?)",
                    [(stable_id(r.doc_id), r.doc_id, r.file, r.source, int(r.chunk), r.text, r.heading, r.page,
                      int(r.start), int(r.end), json.dumps(r.metadata, default=str),
                      np.asarray(r.vector, dtype="<f4").tobytes()) for r in rows],
                )
                if rows or removed or remove_files:
                    self.meta.bump_rows_version(conn)
        except sqlite3.IntegrityError as exc:
            raise LLM2VecError(f"cannot store chunks: {exc} (duplicate id in one call?)") from None
        crash_point("committed")
        backend.apply(rows, removed)
        return len(rows), len(removed)

    def embed_documents(self, texts: Sequence[str], batch_size: int = 32) -> np.ndarray:
        """Normalised document vectors from the index's encoder, checked against the index's dimension."""
        vectors = self.encoder.encode_documents(list(texts), batch_size=batch_size, show_progress_bar=False,
                                                normalize_embeddings=True)
        vectors = normalise(np.asarray(vectors, dtype=np.float32).reshape(len(texts), -1))
        if vectors.shape[1] != self.dim:
            raise IndexModelMismatchError(f"the encoder gives {vectors.shape[1]}-d vectors, the index holds {self.dim}-d")
        return vectors

    def add_texts(self, texts: Sequence[str], metadatas: Sequence[Mapping[str, Any]] | None = None,
                  ids: Sequence[str] | None = None, batch_size: int = 32) -> list[str]:
        """Embed and store ``texts``; returns their string ids (new uuids when ``ids`` is None)."""
        return self._add(texts, None, metadatas, ids, batch_size)

    def add_embeddings(self, texts: Sequence[str], embeddings: Sequence[Sequence[float]] | np.ndarray,
                       metadatas: Sequence[Mapping[str, Any]] | None = None, ids: Sequence[str] | None = None) -> list[str]:
        """Store ``texts`` with vectors computed elsewhere (normalised here); returns their ids.

        The vectors must come from the index's own encoder for dense search to mean anything.
        """
        vectors = np.asarray(embeddings, dtype=np.float32)
        if vectors.ndim != 2 or vectors.shape[0] != len(texts) or (len(texts) and vectors.shape[1] != self.dim):
            raise LLM2VecError(f"embeddings of shape {tuple(vectors.shape)} for {len(texts)} texts; "
                               f"the index holds {self.dim}-d vectors")
        return self._add(texts, normalise(vectors) if len(texts) else vectors, metadatas, ids)

    def _add(self, texts: Sequence[str], vectors: np.ndarray | None, metadatas: Sequence[Mapping[str, Any]] | None,
             ids: Sequence[str] | None, batch_size: int = 32) -> list[str]:
        texts = [str(t) for t in texts]
        if metadatas is not None and len(metadatas) != len(texts):
            raise LLM2VecError(f"{len(metadatas)} metadatas for {len(texts)} texts")
        if ids is not None and len(ids) != len(texts):
            raise LLM2VecError(f"{len(ids)} ids for {len(texts)} texts")
        doc_ids = [str(i) for i in ids] if ids is not None else [uuid.uuid4().hex for _ in texts]
        if len(set(doc_ids)) != len(doc_ids):
            raise LLM2VecError("duplicate ids in one add_texts call")
        if not texts:
            return []
        self._require_writable()
        for s in range(0, len(texts), 1024):
            part = slice(s, s + 1024)
            block = self.embed_documents(texts[part], batch_size) if vectors is None else vectors[part]
            rows = []
            for j, (doc_id, text, vector) in enumerate(zip(doc_ids[part], texts[part], block)):
                meta = dict(metadatas[s + j]) if metadatas is not None else {}
                rows.append(ChunkRow(doc_id, text, vector, source=str(meta.get("source", "")),
                                     chunk=_as_int(meta.get("chunk", 0)), heading=str(meta.get("heading", "") or ""),
                                     page=_as_int(meta["page"]) if meta.get("page") is not None else None,
                                     start=0, end=len(text), metadata=meta))
            self.commit(rows, remove_doc_ids=[r.doc_id for r in rows])
        return doc_ids

    add = add_texts

    def delete(self, ids: Sequence[str]) -> int:
        """Remove the chunks with these string ids; returns how many existed."""
        found = self.meta.ids_for_doc_ids([str(i) for i in ids])
        if not found:
            return 0
        _, removed = self.commit(remove_doc_ids=list(found))
        return removed

    def update(self, folder: str | os.PathLike[str], **options: Any):
        """Bring the index up to date with ``folder``: embed new/changed files, drop deleted ones, save.

        See :func:`llm2vec_rag.index.sync.sync_folder` for the options; returns a ``SyncReport``.
        """
        from .sync import sync_folder

        self.last_report = sync_folder(self, folder, **options)
        return self.last_report

    # ------------------------------------------------------------------ reading
    def get_by_ids(self, ids: Sequence[str]) -> list[Record]:
        """Records in the order asked for; unknown ids are left out."""
        found = self.meta.ids_for_doc_ids([str(i) for i in ids])
        rows = self.meta.rows_by_ids(list(found.values()))
        return [record_from_row(rows[found[i]]) for i in map(str, ids) if i in found and found[i] in rows]

    def get_vectors(self, ids: Sequence[str]) -> np.ndarray:
        """The stored (normalised) vectors of these ids, one row each, in order."""
        found = self.meta.ids_for_doc_ids([str(i) for i in ids])
        missing = [str(i) for i in ids if str(i) not in found]
        if missing:
            raise LLM2VecError(f"no chunk with id {missing[0]!r} in the index")
        vectors = self.meta.vectors_by_ids(list(found.values()), self.dim)
        if not ids:
            return np.zeros((0, self.dim), dtype=np.float32)
        return np.stack([vectors[found[str(i)]] for i in ids])

    @_read_snapshot
    def search(self, query: str, k: int = 10, where: Where = None, instruction: str | None = None,
               mode: str | None = None, alpha: float | None = None, fusion: str | None = None,
               query_vector: Sequence[float] | np.ndarray | None = None) -> list[Hit]:
        """The ``k`` best chunks for ``query``.

        ``mode``: ``hybrid`` (default: dense and BM25 candidates fused, see
        :mod:`llm2vec_rag.index.hybrid`), ``dense`` (cosine to the query embedded with the
        index's query instruction) or ``lexical`` (BM25 only; loads no model). ``alpha`` is
        the dense side's weight in ``convex`` fusion; ``fusion`` is ``convex`` or ``rrf``.
        ``query_vector`` replaces embedding the query (an integration that embeds itself).
        """
        if not isinstance(query, str) or not query.strip():
            raise LLM2VecError("empty query: give some text to search for")
        query = valid_text(query)  # undecodable bytes (surrogate escapes from argv) become U+FFFD
        _check_k(k)
        settings = SearchSettings.of(mode, alpha, fusion)
        if settings.mode != "dense" and not lexical.has_table(self.meta.conn):
            if settings.mode == "lexical":
                raise LLM2VecError(f"the index at {self.path} has no lexical table; open it once for writing "
                                   "(`llm2vec-rag index FOLDER`) to add it")
            if not self._said_dense_only:  # once per opened index: a server must not repeat it per query
                why = "is read-only, so it was not upgraded" if self.meta.readonly else "was not upgraded"
                self._log(f"note: the index at {self.path} was made before hybrid search and {why}: it has no "
                          f"lexical (BM25) table, so {settings.mode} search ranks by the dense side only; open it "
                          "once with write access (`llm2vec-rag index FOLDER`) to add the table")
                self._said_dense_only = True
            settings = SearchSettings.of("dense")
        if len(self) == 0:
            return []
        allowed = None
        if where is not None:
            allowed = self._allowed_ids(where)
            if not len(allowed):
                return []
        depth = settings.depth(k)
        dense: list[tuple[int, float]] = []
        lexical_hits: list[tuple[int, float]] = []
        if settings.mode != "lexical":
            if query_vector is None:
                instr = self.query_instruction if instruction is None else instruction
                query_vector = self.encoder.encode_queries([query], instruction=instr, show_progress_bar=False,
                                                           normalize_embeddings=True)
            dense = self._dense_candidates(query_vector, depth, allowed)
        if settings.mode != "dense":
            lexical_hits = lexical.search(self.meta.conn, query, depth, allowed)
        if settings.mode == "hybrid":
            ranked = fuse(dense, lexical_hits, settings, k)
        else:
            ranked = single(dense or lexical_hits, settings.mode, k)
        rows = self.meta.rows_by_ids([f.id for f in ranked])
        hits: list[Hit] = []
        for f in ranked:
            if f.id in rows:
                hits.append(record_from_row(rows[f.id], Hit, score=f.score, rank=len(hits) + 1, mode=settings.mode,
                                            dense_score=f.dense, lexical_score=f.lexical))
        return hits

    @_read_snapshot
    def search_by_vector(self, vector: Sequence[float] | np.ndarray, k: int = 10, where: Where = None) -> list[Hit]:
        """The ``k`` chunks with the highest cosine similarity to ``vector`` (dense search)."""
        _check_k(k)
        allowed = None
        if where is not None:
            allowed = self._allowed_ids(where)
            if not len(allowed):
                return []
        ranked = self._dense_candidates(vector, k, allowed)
        rows = self.meta.rows_by_ids([i for i, _ in ranked])
        hits: list[Hit] = []
        for i, score in ranked:
            if i in rows:
                hits.append(record_from_row(rows[i], Hit, score=score, rank=len(hits) + 1, dense_score=score))
        return hits

    def _dense_candidates(self, vector: Sequence[float] | np.ndarray, n: int,
                          allowed: np.ndarray | None) -> list[tuple[int, float]]:
        """(chunk id, cosine) of the ``n`` nearest vectors, best first."""
        query = normalise(np.asarray(vector, dtype=np.float32))
        if query.shape != (1, self.dim):
            raise LLM2VecError(f"query vector has shape {tuple(np.shape(vector))}, the index holds {self.dim}-d vectors")
        scores, ids = self.backend.search(query, n, allowed)
        if not ids.size:
            return []
        return [(int(i), float(s)) for s, i in zip(scores[0], ids[0]) if int(i) != -1]

    def _allowed_ids(self, where: Where) -> np.ndarray:
        conn = self.meta.conn
        if isinstance(where, str):
            pairs = conn.execute(
                "SELECT DISTINCT c.source, f.rel FROM chunks c LEFT JOIN files f ON c.file = f.path").fetchall()
            sources = [src for src, rel in pairs if path_matches(where, src, rel)]
            ids: list[int] = []
            for part in _parts(sources):
                q = f"SELECT id FROM chunks WHERE source IN ({','.join('?' * len(part))})"
                ids += [r[0] for r in conn.execute(q, part)]
            return np.asarray(ids, dtype=np.int64)
        if isinstance(where, Mapping):
            columns = {"source": "source", "chunk": "chunk", "heading": "heading", "page": "page", "id": "doc_id"}
            clauses, params = [], []
            for key, value in where.items():
                if key in columns:
                    column = columns[key]
                else:
                    if not str(key).replace("_", "").replace("-", "").isalnum():
                        raise LLM2VecError(f"unsupported filter key {key!r}")
                    column = f"json_extract(metadata, '$.\"{key}\"')"
                values = list(value) if isinstance(value, (list, tuple, set)) else [value]
                clauses.append(f"{column} IN ({','.join('?' * len(values))})")
                params += [v if isinstance(v, (int, float, str)) or v is None else json.dumps(v) for v in values]
            sql = "SELECT id FROM chunks" + (" WHERE " + " AND ".join(clauses) if clauses else "")
            return np.asarray([r[0] for r in conn.execute(sql, params)], dtype=np.int64)
        if callable(where):
            return np.asarray([i for i, m in conn.execute("SELECT id, metadata FROM chunks") if where(json.loads(m))],
                              dtype=np.int64)
        raise LLM2VecError(f"where must be a path glob, a dict or a callable, not {type(where).__name__}")

    def stats(self) -> dict[str, Any]:
        """Counts and settings, for ``--json`` summaries and humans."""
        return {"path": str(self.path), "chunks": len(self), "files": self.meta.file_count(),
                "model": self.info.get("model"), "fingerprint": self.info.get("fingerprint"), "dim": self.dim,
                "index_type": self.index_type, "query_instruction": self.query_instruction, **self.backend.describe()}


def path_matches(pattern: str, source: str, rel: str | None = None) -> bool:
    """Glob (or folder prefix, when there is no wildcard) against the absolute, cwd-relative and indexed path."""
    candidates = [source]
    if rel:
        candidates.append(rel)
    if os.path.isabs(source):
        try:
            candidates.append(os.path.relpath(source))
        except ValueError:
            pass
    candidates.append(source.rsplit("/", 1)[-1])
    if any(ch in pattern for ch in "*?["):
        return any(fnmatch.fnmatchcase(c, pattern) for c in candidates)
    prefix = pattern.rstrip("/")
    stripped = prefix[2:] if prefix.startswith("./") else prefix
    return any(c == stripped or c.startswith(stripped + "/") for c in candidates)


def _check_k(k: int) -> None:
    if not isinstance(k, (int, np.integer)) or k < 1:
        raise LLM2VecError(f"k must be at least 1, got {k}")


def _as_int(value: Any) -> int:
    try:
        return int(value)
    except (TypeError, ValueError):
        return 0


def _parts(items: list, size: int = 500):
    for s in range(0, len(items), size):
        yield items[s : s + size]


def _stderr(message: str) -> None:
    print(message, file=sys.stderr)


def _default_model() -> str:
    from ..embedded import DEFAULT_MODEL

    return DEFAULT_MODEL


def _drop_outside(cls: type[Index], folder: Path, lock: WriteLock, log: Callable[[str], None] | None) -> None:
    """Before ``--rebuild`` wipes the folder: take the old index's points out of a Qdrant collection."""
    try:
        old = cls(folder, MetaStore(folder / META_FILE), None, lock, log)
    except LLM2VecError:
        return  # unreadable: nothing we can identify outside the folder
    try:
        _drop_backend(old)
    finally:
        old.meta.close()


def _drop_backend(index: Index) -> None:
    """Take the index's vectors out of where they live outside its folder (Qdrant); warn, never fail."""
    try:
        index.backend.drop()
    except LLM2VecError as exc:
        index.log(f"warning: could not remove the old vectors ({exc}); carrying on")
    finally:
        if index._backend is not None:
            index._backend.close()


def _has_index(folder: Path) -> bool:
    """A ``meta.sqlite`` with something in it (a zero-byte one, left by a failed create, is no index)."""
    try:
        return (folder / META_FILE).stat().st_size > 0
    except OSError:
        return False


def _first_missing(folder: Path) -> Path | None:
    """The outermost folder ``mkdir(parents=True)`` is about to create (None: it exists)."""
    folder = folder.absolute()
    missing = None
    while not folder.exists():
        missing = folder
        if folder.parent == folder:
            break
        folder = folder.parent
    return missing


def _remove_created(folder: Path, created: Path | None, fresh: bool, had_lock: bool) -> None:
    """Undo what a failed ``open`` created: a new index's files, the lock file, new folders (if empty)."""
    folder = folder.absolute()
    if fresh:
        for name in (META_FILE, f"{META_FILE}-wal", f"{META_FILE}-shm", f"{META_FILE}-journal"):
            (folder / name).unlink(missing_ok=True)
        _wipe_faiss(folder)
    if fresh and not had_lock:
        (folder / LOCK_FILE).unlink(missing_ok=True)
    if created is None:
        return
    while True:
        try:
            folder.rmdir()
        except OSError:
            return
        if folder == created or folder.parent == folder:
            return
        folder = folder.parent


def _wipe(folder: Path) -> None:
    """Remove this index's own files (never anything else in the folder); a Qdrant collection is
    replaced when the new index first writes to it."""
    for pattern in (f"{META_FILE}", f"{META_FILE}-wal", f"{META_FILE}-shm", f"{META_FILE}-journal"):
        for path in folder.glob(pattern):
            path.unlink(missing_ok=True)
    _wipe_faiss(folder)


def _wipe_faiss(folder: Path) -> None:
    for path in folder.glob("vectors-*.faiss*"):
        path.unlink(missing_ok=True)


def _describe_target(changes: Mapping[str, Any], info: Mapping[str, Any]) -> str:
    merged = {**info, **changes}
    if merged.get("backend") == "qdrant":
        where = merged.get("qdrant_url") or "a local Qdrant collection"
        return f"{where} (collection {merged.get('qdrant_collection')})"
    return "FAISS"
