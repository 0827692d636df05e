"""SQLite side of the index: settings, files, chunks and their vectors, with numbered migrations.

SQLite is the source of truth. It stores every chunk's vector (float32 blob),
so the FAISS file can always be rebuilt from it, and it records which FAISS
file generation matches which ``rows_version``:

* every transaction that changes chunks bumps ``rows_version``;
* a FAISS snapshot is written to a new file, renamed into place, and only then
  ``faiss_generation`` / ``faiss_rows_version`` are committed here.

On load, a FAISS file whose recorded version differs from ``rows_version``
(an interrupted run) is not trusted: FAISS is rebuilt from these rows.
"""
from __future__ import annotations

import json
import os
import sqlite3
import time
from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any
from urllib.parse import quote

import numpy as np

from ..errors import IndexFormatError, IndexReadOnlyError, IndexWriteError, LLM2VecError
from . import lexical

META_FILE = "meta.sqlite"

# Migration n brings user_version from n to n + 1. Append only: never edit a released one.
MIGRATIONS: list[str] = [
    """
    CREATE TABLE info (key TEXT PRIMARY KEY, value TEXT NOT NULL);
    CREATE TABLE files (
        path TEXT PRIMARY KEY,            -- absolute path
        root TEXT NOT NULL,               -- the folder it was indexed from
        rel TEXT NOT NULL,                -- path relative to root
        size INTEGER NOT NULL,
        mtime_ns INTEGER NOT NULL,
        content_hash TEXT NOT NULL,
        settings TEXT NOT NULL,           -- chunking settings it was indexed with
        chunks INTEGER NOT NULL,
        indexed_at REAL NOT NULL
    );
    CREATE TABLE chunks (
        id INTEGER PRIMARY KEY,           -- the FAISS id (int64, derived from doc_id)
        doc_id TEXT NOT NULL UNIQUE,
        file TEXT REFERENCES files(path) ON DELETE CASCADE,
        source TEXT NOT NULL DEFAULT '',
        chunk INTEGER NOT NULL DEFAULT 0,
        text TEXT NOT NULL,
        heading TEXT NOT NULL DEFAULT '',
        page INTEGER,
        start_char INTEGER NOT NULL DEFAULT 0,
        end_char INTEGER NOT NULL DEFAULT 0,
        metadata TEXT NOT NULL DEFAULT '{}',
        vector BLOB NOT NULL
    );
    CREATE INDEX chunks_file ON chunks(file);
    CREATE INDEX chunks_source ON chunks(source);
    CREATE INDEX files_root ON files(root);
    """,
    # 1 -> 2: the lexical (BM25) table of hybrid search, filled from the stored texts (no re-embedding).
    lexical.schema() + """
    UPDATE info SET value = '2' WHERE key = 'format';
    """,
]
FORMAT_VERSION = len(MIGRATIONS)

CHUNK_COLUMNS = "id, doc_id, file, source, chunk, text, heading, page, start_char, end_char, metadata"


def _corrupt(path: Path, exc: Exception) -> IndexFormatError:
    return IndexFormatError(
        f"the index at {path.parent} is corrupt ({path.name}: {_first_line(exc)}); "
        "rebuild it with `llm2vec-rag index FOLDER --rebuild`"
    )


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0][:200] if text else type(exc).__name__


def database_error(exc: BaseException, path: Path | None = None, doing: str = "reading") -> LLM2VecError:
    """One line for any SQLite error: full disk, read-only, locked, or corrupt (never a traceback)."""
    where = f" at {Path(path).parent}" if path is not None else ""
    text = str(exc).lower()
    if "disk is full" in text or "no space" in text or "i/o error" in text and _nearly_full(path):
        return IndexWriteError(f"no space left on the device of the index{where} while {doing}; the unfinished "
                               "change was rolled back and the index is as it was before it")
    if "readonly" in text or "read-only" in text:
        return IndexReadOnlyError(f"the index{where} is read-only: it can be searched, not changed")
    if "locked" in text or "busy" in text:
        return LLM2VecError(f"the index{where} is busy (another process holds its database): try again")
    if "i/o error" in text:
        return LLM2VecError(f"cannot read or write the index database{where} (disk I/O error)")
    if "unable to open" in text:
        return LLM2VecError(f"cannot open the index database{where} ({_first_line(exc)})")
    if path is not None:
        return _corrupt(Path(path), exc)
    return IndexFormatError(f"the index database is corrupt ({_first_line(exc)}); rebuild it with "
                            "`llm2vec-rag index FOLDER --rebuild`")


def _nearly_full(path: Path | None) -> bool:
    try:
        st = os.statvfs(Path(path).parent if path is not None else ".")
    except OSError:
        return False
    return st.f_bavail * st.f_frsize < (1 << 20)


def _is_read_only(path: Path) -> bool:
    """The database (or its folder, where SQLite keeps -wal/-shm) cannot be written by this process."""
    folder = path.parent
    try:
        if os.statvfs(folder).f_flag & os.ST_RDONLY:
            return True
    except OSError:
        pass
    return path.exists() and (not os.access(path, os.W_OK) or not os.access(folder, os.W_OK))


class MetaStore:
    """A thin, typed wrapper over the index's SQLite database.

    A read-only database (file, folder or file system) is opened read-only, without
    migrations: it can be searched; writing raises :class:`IndexReadOnlyError`.
    """

    def __init__(self, path: Path, create: bool = False) -> None:
        self.path = Path(path)
        if not self.path.exists() and not create:
            raise LLM2VecError(f"{self.path} does not exist")
        self.readonly = not create and _is_read_only(self.path)
        self.cannot_write: LLM2VecError | None = None  # why a database opened for reading only cannot be written
        try:
            try:
                self.conn = self._connect(self.readonly)
            except sqlite3.DatabaseError as exc:
                if create or self.readonly or not _nearly_full(self.path):
                    raise
                # a full disk: SQLite cannot create the -shm file; reading works without it
                self.cannot_write = database_error(exc, self.path, "opening it")
                self.readonly = True
                self.conn = self._connect(True)
            version = self.conn.execute("PRAGMA user_version").fetchone()[0]
        except sqlite3.DatabaseError as exc:
            raise database_error(exc, self.path, "opening it") from None
        if version > FORMAT_VERSION:
            self.conn.close()
            raise _newer(self.path, version)
        if version < FORMAT_VERSION and not self.readonly:
            try:
                if version == 0 and not create and not self._has_tables():
                    self.conn.close()
                    raise _corrupt(self.path, Exception("no index tables"))
                self._migrate(version)
            except sqlite3.DatabaseError as exc:
                self.conn.close()
                raise database_error(exc, self.path, "upgrading its format") from None
        try:
            self.conn.execute("SELECT count(*) FROM info").fetchone()
            row = self.conn.execute("SELECT value FROM info WHERE key = 'format'").fetchone()
        except sqlite3.DatabaseError as exc:
            self.conn.close()
            raise database_error(exc, self.path) from None
        recorded = _as_version(row[0]) if row else None
        if recorded is not None and recorded > FORMAT_VERSION:
            self.conn.close()
            raise _newer(self.path, recorded)

    def _connect(self, readonly: bool) -> sqlite3.Connection:
        if readonly:
            wal = Path(f"{self.path}-wal")
            # Without its -shm/-wal files (and no right to create them) SQLite reads a WAL
            # database only as immutable; a leftover -wal without -shm cannot be applied then.
            modes = ["ro", "ro&immutable=1"] if wal.exists() and Path(f"{self.path}-shm").exists() else \
                ["ro&immutable=1"]
            for mode in modes:
                uri = f"file:{quote(str(self.path.absolute()))}?mode={mode}"
                conn = sqlite3.connect(uri, uri=True, isolation_level=None, timeout=30)
                try:
                    conn.execute("PRAGMA user_version").fetchone()
                    break
                except sqlite3.DatabaseError:
                    conn.close()
                    if mode == modes[-1]:
                        raise
        else:
            conn = sqlite3.connect(str(self.path), isolation_level=None, timeout=30)
            try:
                conn.execute("PRAGMA journal_mode=WAL")
                conn.execute("PRAGMA synchronous=FULL")
            except sqlite3.DatabaseError:
                conn.close()
                raise
        conn.execute("PRAGMA foreign_keys=ON")
        return conn

    def _has_tables(self) -> bool:
        return bool(self.conn.execute("SELECT count(*) FROM sqlite_master").fetchone()[0])

    def _migrate(self, current: int) -> None:
        for number in range(current, FORMAT_VERSION):
            with self.transaction():
                for statement in _statements(MIGRATIONS[number]):
                    self.conn.execute(statement)
                self.conn.execute(f"PRAGMA user_version={number + 1}")

    def close(self) -> None:
        try:
            self.conn.close()
        except sqlite3.Error:
            pass

    @contextmanager
    def transaction(self) -> Iterator[sqlite3.Connection]:
        """``BEGIN IMMEDIATE`` … ``COMMIT`` (``ROLLBACK`` on any error).

        SQLite errors (full disk, read-only, corrupt pages) become one-line ``LLM2VecError``s;
        the transaction is rolled back, so the index stays as it was before it.
        """
        if self.readonly:
            raise self.cannot_write or IndexReadOnlyError(
                f"the index at {self.path.parent} is read-only: it can be searched, not changed")
        try:
            self.conn.execute("BEGIN IMMEDIATE")
        except sqlite3.DatabaseError as exc:
            raise database_error(exc, self.path, "writing to it") from None
        try:
            yield self.conn
        except BaseException as exc:
            try:
                self.conn.execute("ROLLBACK")
            except sqlite3.Error:
                pass  # SQLite rolled back already (SQLITE_FULL does)
            if isinstance(exc, sqlite3.DatabaseError) and not isinstance(exc, sqlite3.IntegrityError):
                raise database_error(exc, self.path, "writing to it") from None
            raise
        try:
            self.conn.execute("COMMIT")
        except sqlite3.DatabaseError as exc:
            try:
                self.conn.execute("ROLLBACK")
            except sqlite3.Error:
                pass
            raise database_error(exc, self.path, "writing to it") from None

    @contextmanager
    def read_snapshot(self) -> Iterator[sqlite3.Connection]:
        """One read transaction (WAL snapshot): every query inside sees the same committed state.

        Nested use (or inside a write transaction) joins the open one.
        """
        if self.conn.in_transaction:
            yield self.conn
            return
        try:
            self.conn.execute("BEGIN")
        except sqlite3.DatabaseError as exc:
            raise database_error(exc, self.path) from None
        try:
            yield self.conn
        finally:
            try:
                self.conn.execute("COMMIT")
            except sqlite3.Error:
                pass

    # ------------------------------------------------------------ info
    def info(self) -> dict[str, Any]:
        return {k: json.loads(v) for k, v in self.conn.execute("SELECT key, value FROM info")}

    def set_info(self, values: dict[str, Any], conn: sqlite3.Connection | None = None) -> None:
        (conn or self.conn).executemany(
            "INSERT INTO info(key, value) VALUES (?, ?) ON CONFLICT(key) DO UPDATE SET value = excluded.value",
            [(k, json.dumps(v)) for k, v in values.items()],
        )

    def bump_rows_version(self, conn: sqlite3.Connection) -> int:
        row = conn.execute("SELECT value FROM info WHERE key = 'rows_version'").fetchone()
        version = (json.loads(row[0]) if row else 0) + 1
        self.set_info({"rows_version": version, "updated_at": time.time()}, conn)
        return version

    # ------------------------------------------------------------ files
    def files_under(self, root: str) -> dict[str, sqlite3.Row]:
        cur = self.conn.execute(
            "SELECT path, root, rel, size, mtime_ns, content_hash, settings, chunks FROM files WHERE root = ?",
            (root,),
        )
        cols = [d[0] for d in cur.description]
        return {row[0]: dict(zip(cols, row)) for row in cur}

    def file_count(self) -> int:
        return int(self.conn.execute("SELECT count(*) FROM files").fetchone()[0])

    # ------------------------------------------------------------ chunks
    def count(self) -> int:
        return int(self.conn.execute("SELECT count(*) FROM chunks").fetchone()[0])

    def ids_for_file(self, conn: sqlite3.Connection, path: str) -> list[int]:
        return [r[0] for r in conn.execute("SELECT id FROM chunks WHERE file = ?", (path,))]

    def ids_for_doc_ids(self, doc_ids: Sequence[str]) -> dict[str, int]:
        out: dict[str, int] = {}
        for part in _parts(list(doc_ids)):
            q = f"SELECT doc_id, id FROM chunks WHERE doc_id IN ({','.join('?' * len(part))})"
            out.update(dict(self.conn.execute(q, part).fetchall()))
        return out

    def rows_by_ids(self, ids: Sequence[int]) -> dict[int, tuple]:
        out: dict[int, tuple] = {}
        for part in _parts([int(i) for i in ids]):
            q = f"SELECT {CHUNK_COLUMNS} FROM chunks WHERE id IN ({','.join('?' * len(part))})"
            for row in self.conn.execute(q, part):
                out[row[0]] = row
        return out

    def vectors_by_ids(self, ids: Sequence[int], dim: int) -> dict[int, np.ndarray]:
        out: dict[int, np.ndarray] = {}
        for part in _parts([int(i) for i in ids]):
            q = f"SELECT id, vector FROM chunks WHERE id IN ({','.join('?' * len(part))})"
            for i, blob in self.conn.execute(q, part):
                out[i] = np.frombuffer(blob, dtype="<f4", count=dim).astype(np.float32)
        return out

    def iter_vectors(self, dim: int, batch: int = 8192) -> Iterator[tuple[np.ndarray, np.ndarray]]:
        """All (ids, vectors) in id order, ``batch`` rows at a time (keyset pagination)."""
        last = -(1 << 63)
        while True:
            rows = self.conn.execute(
                "SELECT id, vector FROM chunks WHERE id > ? ORDER BY id LIMIT ?", (last, batch)
            ).fetchall()
            if not rows:
                return
            ids = np.fromiter((r[0] for r in rows), dtype=np.int64, count=len(rows))
            vectors = np.frombuffer(b"".join(r[1] for r in rows), dtype="<f4").reshape(len(rows), dim)
            yield ids, vectors.astype(np.float32)
            last = int(ids[-1])

    def sample_vectors(self, n: int, dim: int) -> np.ndarray:
        rows = self.conn.execute("SELECT vector FROM chunks ORDER BY random() LIMIT ?", (n,)).fetchall()
        return np.frombuffer(b"".join(r[0] for r in rows), dtype="<f4").reshape(len(rows), dim).astype(np.float32)

    def all_ids(self) -> np.ndarray:
        return np.fromiter((r[0] for r in self.conn.execute("SELECT id FROM chunks")), dtype=np.int64)


def _newer(path: Path, version: int) -> IndexFormatError:
    return IndexFormatError(
        f"the index at {path.parent} has format version {version}, newer than this "
        f"llm2vec-rag reads ({FORMAT_VERSION}); upgrade llm2vec-rag or rebuild the index"
    )


def _as_version(value: Any) -> int | None:
    try:
        return int(json.loads(value))
    except (TypeError, ValueError):
        return None


def _parts(items: list, size: int = 500) -> Iterable[list]:
    for s in range(0, len(items), size):
        yield items[s : s + size]


def _statements(script: str) -> list[str]:
    """Split a script into statements; a trigger body's inner ``;`` does not end its ``CREATE TRIGGER``."""
    out, pending = [], ""
    for piece in script.split(";"):
        pending += piece + ";"
        if sqlite3.complete_statement(pending):
            if pending.strip(" \n;"):
                out.append(pending.strip())
            pending = ""
    if pending.strip(" \n;"):
        out.append(pending.strip())
    return out
