"""``llm2vec-rag check``: verify what a user cannot see, and repair from SQLite where that is possible.

Checked (read-only unless ``repair``):

* SQLite: ``PRAGMA integrity_check`` and ``foreign_key_check``;
* every file's recorded chunk count against its chunk rows, and every stored vector's size;
* the lexical (FTS5) table against the chunk rows (when the index has one);
* the vector side: FAISS generation file present, its checksum, its version against
  ``rows_version``, and its ids equal to the SQLite ids (Qdrant: the point count);
* leftovers: stray FAISS generations, ``*.tmp`` files, an unfinished ``--rebuild``.

Repairs (``repair=True``, under the write lock): a file whose chunks do not add up is
dropped from the index (the next ``index`` run embeds it again); the lexical table is
rebuilt from the chunk rows; the FAISS file is rebuilt from the stored vectors (never by
re-embedding); leftovers are removed. A damaged SQLite database cannot be repaired in
place: the report says so (rebuild it with ``index FOLDER --rebuild``).
"""
from __future__ import annotations

import os
import sqlite3
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import LLM2VecError
from . import lexical, store
from .rebuild import STAGING_DIR


@dataclass
class Finding:
    """One thing found wrong; ``repairable`` when ``check --repair`` can fix it from SQLite."""

    kind: str
    message: str
    repairable: bool = True
    detail: dict[str, Any] = field(default_factory=dict)


@dataclass
class CheckReport:
    path: str
    findings: list[Finding] = field(default_factory=list)
    repaired: list[str] = field(default_factory=list)
    stats: dict[str, Any] = field(default_factory=dict)

    @property
    def ok(self) -> bool:
        return not self.findings

    def to_dict(self) -> dict[str, Any]:
        return {"path": self.path, "ok": self.ok, "problems": [f.message for f in self.findings],
                "kinds": sorted({f.kind for f in self.findings}), "repaired": list(self.repaired), **self.stats}


def check_index(path: str | os.PathLike[str], repair: bool = False,
                log: Callable[[str], None] | None = None) -> CheckReport:
    """Check the index at ``path``; with ``repair``, fix what can be fixed and check again."""
    from .index import Index

    folder = Path(path).expanduser()
    quiet = log or (lambda m: None)
    with Index.load(folder, log=quiet) as index:
        report = _inspect(index)
    if not repair or report.ok:
        return report
    fixable = [f for f in report.findings if f.repairable]
    if not fixable:
        return report
    with Index.load(folder, writable=True, log=quiet) as index:
        repaired = _repair(index, fixable)
    with Index.load(folder, log=quiet) as index:
        after = _inspect(index)
    after.repaired = repaired
    return after


# ------------------------------------------------------------------ checks
def _inspect(index: Any) -> CheckReport:
    report = CheckReport(str(index.path))
    conn = index.meta.conn
    found = report.findings
    try:
        with index.meta.read_snapshot():
            problems = [r[0] for r in conn.execute("PRAGMA integrity_check(20)")]
            if problems != ["ok"]:
                found.append(Finding("sqlite", f"SQLite integrity: {'; '.join(problems[:3])}", repairable=False))
                return report  # nothing below can be trusted
            if conn.execute("PRAGMA foreign_key_check").fetchone() is not None:
                found.append(Finding("sqlite", "SQLite: chunk rows point at files that are not recorded",
                                     detail={"orphans": True}))
            _check_rows(index, found)
            report.stats = {"chunks": index.meta.count(), "files": index.meta.file_count(),
                            "backend": index.info.get("backend", "faiss"), "index_type": index.index_type}
            _check_vectors(index, found)
    except sqlite3.DatabaseError as exc:
        found.append(Finding("sqlite", f"SQLite: {str(exc).splitlines()[0][:160]}", repairable=False))
        return report
    _check_lexical(index.meta, found)  # outside the snapshot: FTS5 runs its check as an INSERT
    _check_leftovers(index, found)
    return report


def _check_rows(index: Any, found: list[Finding]) -> None:
    conn = index.meta.conn
    bad_files = [path for path, recorded, rows in conn.execute(
        "SELECT f.path, f.chunks, (SELECT count(*) FROM chunks c WHERE c.file = f.path) FROM files f")
        if recorded != rows]
    if bad_files:
        found.append(Finding("chunks", f"{len(bad_files)} file(s) whose recorded chunk count differs from their "
                             f"chunk rows (first: {bad_files[0]})", detail={"files": bad_files}))
    size = 4 * index.dim
    bad_vectors = [i for i, n in conn.execute("SELECT id, length(vector) FROM chunks") if n != size]
    if bad_vectors:
        found.append(Finding("vectors", f"{len(bad_vectors)} chunk(s) whose stored vector is not {index.dim}-d",
                             detail={"ids": bad_vectors}))


def _check_lexical(meta: Any, found: list[Finding]) -> None:
    conn = meta.conn
    if not lexical.has_table(conn) or meta.readonly:  # FTS5 cannot run its check on a read-only database
        return
    try:
        conn.execute(f"INSERT INTO {lexical.TABLE}({lexical.TABLE}, rank) VALUES ('integrity-check', 1)")
    except sqlite3.DatabaseError as exc:
        found.append(Finding("lexical", f"the lexical (BM25) table is out of step with the chunks "
                             f"({str(exc).splitlines()[0][:120]})"))


def _check_vectors(index: Any, found: list[Finding]) -> None:
    info = index.info
    if info.get("backend", "faiss") != "faiss":
        try:
            count = index.backend.count()
        except LLM2VecError as exc:
            found.append(Finding("vectors", f"cannot reach the {info.get('backend')} backend: {exc}",
                                 repairable=False))
            return
        if count != index.meta.count() or info.get("backend_rows_version") != info.get("rows_version"):
            found.append(Finding("vectors", f"the {info.get('backend')} collection holds {count} vectors, "
                                 f"SQLite {index.meta.count()} (or is behind it)"))
        return
    generation = int(info.get("faiss_generation", 0))
    path = index.path / f"vectors-{generation}.faiss"
    if not generation or not path.is_file():
        if index.meta.count() or generation:
            found.append(Finding("faiss", f"the FAISS file {path.name} is missing"))
        return
    if not store.checksum_matches(path, info.get("faiss_checksum")):
        found.append(Finding("faiss", f"{path.name} does not match its checksum (damaged on disk)"))
        return
    if info.get("faiss_rows_version") != info.get("rows_version"):
        found.append(Finding("faiss", f"{path.name} is behind the stored chunks (an interrupted run)"))
        return
    try:
        faiss_index = store.read_index(path, info.get("faiss_checksum"))
    except Exception as exc:  # FAISS raises RuntimeError for unreadable files
        found.append(Finding("faiss", f"{path.name} is unreadable ({store.faiss_message(exc)[:100]})"))
        return
    import faiss

    faiss_ids = np.sort(faiss.vector_to_array(faiss_index.id_map).astype(np.int64))
    sqlite_ids = np.sort(index.meta.all_ids())
    if faiss_index.d != index.dim or not np.array_equal(faiss_ids, sqlite_ids):
        missing, extra = np.setdiff1d(sqlite_ids, faiss_ids).size, np.setdiff1d(faiss_ids, sqlite_ids).size
        found.append(Finding("faiss", f"{path.name} and SQLite disagree ({missing} chunk(s) missing from FAISS, "
                             f"{extra} unknown to SQLite)"))


def _check_leftovers(index: Any, found: list[Finding]) -> None:
    keep = index.path / f"vectors-{int(index.info.get('faiss_generation', 0))}.faiss"
    stray = [p.name for p in index.path.glob("vectors-*.faiss*") if p != keep]
    stray += [p.name for p in index.path.glob("*.tmp")]
    if (index.path / STAGING_DIR).exists():
        stray.append(f"{STAGING_DIR}/ (an unfinished --rebuild)")
    if stray:
        found.append(Finding("leftovers", f"leftover files: {', '.join(sorted(stray)[:5])}",
                             detail={"files": stray}))


# ------------------------------------------------------------------ repairs
def _repair(index: Any, findings: list[Finding]) -> list[str]:
    done: list[str] = []
    kinds = {f.kind for f in findings}
    meta = index.meta
    drop_files: set[str] = set()
    for f in findings:
        if f.kind == "chunks":
            drop_files.update(f.detail.get("files", ()))
        if f.kind == "vectors" and "ids" in f.detail:
            ids = [int(i) for i in f.detail["ids"]]
            for part in range(0, len(ids), 500):
                chunk = ids[part:part + 500]
                rows = meta.conn.execute(f"SELECT DISTINCT file FROM chunks WHERE id IN ({','.join('?' * len(chunk))})"
                                         " AND file IS NOT NULL", chunk).fetchall()
                drop_files.update(r[0] for r in rows)
            with meta.transaction() as conn:
                for part in range(0, len(ids), 500):
                    chunk = ids[part:part + 500]
                    conn.execute(f"DELETE FROM chunks WHERE id IN ({','.join('?' * len(chunk))})", chunk)
                meta.bump_rows_version(conn)
            done.append(f"removed {len(ids)} chunk(s) with a damaged vector")
    if any(f.kind == "sqlite" and f.detail.get("orphans") for f in findings):
        with meta.transaction() as conn:
            rows = conn.execute("DELETE FROM chunks WHERE file IS NOT NULL AND file NOT IN (SELECT path FROM files)")
            meta.bump_rows_version(conn)
        done.append(f"removed {rows.rowcount} chunk row(s) of unrecorded files")
    if drop_files:
        with meta.transaction() as conn:
            for path in drop_files:
                conn.execute("DELETE FROM chunks WHERE file = ?", (path,))
                conn.execute("DELETE FROM files WHERE path = ?", (path,))
            meta.bump_rows_version(conn)
        done.append(f"dropped {len(drop_files)} file(s) with inconsistent chunks (the next `index` run embeds "
                    "them again)")
    if "lexical" in kinds and lexical.has_table(meta.conn):
        with meta.transaction() as conn:
            conn.execute(f"INSERT INTO {lexical.TABLE}({lexical.TABLE}) VALUES ('rebuild')")
        done.append("rebuilt the lexical (BM25) table from the chunk rows")
    index.info = meta.info()
    if kinds & {"faiss", "vectors", "chunks", "sqlite"}:
        index.backend.mark_stale()
        if index.info.get("backend", "faiss") == "faiss":
            index.backend.faiss_index()
            index.save()
            done.append(f"rebuilt the FAISS file from the {len(index)} stored vectors (no re-embedding)")
        else:
            index.backend.reconcile()
            done.append(f"copied the {len(index)} stored vectors to the {index.info.get('backend')} collection")
    if "leftovers" in kinds:
        import shutil

        keep = index.path / f"vectors-{int(index.info.get('faiss_generation', 0))}.faiss"
        removed = 0
        for p in [*index.path.glob("vectors-*.faiss*"), *index.path.glob("*.tmp")]:
            if p != keep:
                p.unlink(missing_ok=True)
                removed += 1
        if (index.path / STAGING_DIR).exists():
            shutil.rmtree(index.path / STAGING_DIR, ignore_errors=True)
            removed += 1
        done.append(f"removed {removed} leftover file(s)")
    return done

