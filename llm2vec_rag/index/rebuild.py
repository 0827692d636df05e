"""``--rebuild`` without a window of data loss: the new index is built beside the live one and swapped in.

A rebuild writes a complete new index (``meta.sqlite`` and its FAISS file) into
``<index>/rebuild-staging/`` while the live index keeps answering searches. Only
when the new one is complete (``Index.close`` after a successful run) is it
swapped in:

1. the staged FAISS file is renamed next to the live one, under a generation
   number no file there uses (the live ``meta.sqlite`` does not point at it yet);
2. the staged database is copied into the live ``meta.sqlite`` with SQLite's
   backup API: one write transaction, so a reader sees the old index or the new
   one, never a mix, and a kill before its commit leaves the old one untouched;
   readers that hold the live file open keep working (nothing is renamed over it,
   so its ``-wal``/``-shm`` files stay the live database's own);
3. old FAISS generations and the staging folder are removed (a reader whose snapshot
   named an old file searches again in a new snapshot, see ``Index`` searches).

A failed or killed rebuild leaves the live index as it was. Running the same
``--rebuild`` again resumes the staged one (only files not yet staged are
embedded); a normal writer run, or a rebuild with other settings, discards it.
"""
from __future__ import annotations

import os
import re
import shutil
import sqlite3
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

from ..errors import LLM2VecError
from . import store
from .faults import crash_point
from .meta import META_FILE, MetaStore

STAGING_DIR = "rebuild-staging"
RESUME_KEYS = ("fingerprint", "dim", "index_type", "backend", "query_instruction", "model_args")
_GENERATION = re.compile(r"vectors-(\d+)\.faiss")


def staging_path(folder: Path) -> Path:
    return Path(folder) / STAGING_DIR


def live_info(folder: Path) -> dict[str, Any] | None:
    """The live index's settings, or None when its database cannot be read (then there is nothing to keep)."""
    try:
        meta = MetaStore(Path(folder) / META_FILE)
    except LLM2VecError:
        return None
    try:
        return meta.info()
    except sqlite3.DatabaseError:
        return None
    finally:
        meta.close()


def discard_staging(folder: Path, log: Callable[[str], None]) -> None:
    """A writer that is not rebuilding removes an unfinished rebuild (it holds the write lock)."""
    path = staging_path(folder)
    if path.exists():
        log(f"note: discarding an unfinished --rebuild in {path}")
        shutil.rmtree(path, ignore_errors=True)


def open_staging(folder: Path, want: Mapping[str, Any], log: Callable[[str], None]) -> tuple[MetaStore, bool]:
    """The staging database: the unfinished rebuild with the same settings (resumed), else a new one."""
    path = staging_path(folder)
    if (path / META_FILE).is_file():
        meta = None
        try:
            meta = MetaStore(path / META_FILE)
            info = meta.info()
            if all(info.get(k) == want.get(k) for k in RESUME_KEYS):
                log(f"note: resuming the unfinished --rebuild in {path}")
                return meta, True
        except (LLM2VecError, sqlite3.DatabaseError):
            pass
        if meta is not None:
            meta.close()
    shutil.rmtree(path, ignore_errors=True)
    path.mkdir(parents=True)
    return MetaStore(path / META_FILE, create=True), False


def _generations(folder: Path) -> list[int]:
    return [int(m.group(1)) for p in Path(folder).glob("vectors-*.faiss") if (m := _GENERATION.fullmatch(p.name))]


def swap_in(meta: MetaStore, folder: Path) -> None:
    """Make the complete staged index (``meta``, its FAISS file beside it) the live one at ``folder``."""
    folder = Path(folder)
    staged = meta.path.parent
    live = sqlite3.connect(str(folder / META_FILE), isolation_level=None, timeout=30)
    try:
        live.execute("PRAGMA journal_mode=WAL")
        live.execute("PRAGMA synchronous=FULL")
        try:
            row = live.execute("SELECT value FROM info WHERE key = 'faiss_generation'").fetchone()
            live_generation = int(row[0]) if row else 0
        except (sqlite3.DatabaseError, ValueError):
            live_generation = 0
        info = meta.info()
        own = int(info.get("faiss_generation", 0))
        target = max([live_generation, own, *_generations(folder)]) + 1
        source = staged / f"vectors-{own}.faiss"
        if own and source.is_file():
            os.replace(source, folder / f"vectors-{target}.faiss")
            store.fsync_dir(folder)
            with meta.transaction() as conn:
                meta.set_info({"faiss_generation": target}, conn)
        else:  # no snapshot (cannot happen after save): the next writer rebuilds it from the rows
            with meta.transaction() as conn:
                meta.set_info({"faiss_generation": target, "faiss_rows_version": -1}, conn)
        crash_point("swap-moved")
        meta.conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
        try:
            meta.conn.backup(live)  # one transaction on the live database
        except sqlite3.Error as exc:
            raise LLM2VecError(f"could not swap the rebuilt index into {folder} ({exc}); the old index is "
                               f"unchanged and the rebuild is kept in {staged}: run the --rebuild again") from None
        crash_point("swap-committed")
        try:
            live.execute("PRAGMA busy_timeout = 0")  # never wait for a reader's search to end
            live.execute("PRAGMA wal_checkpoint(TRUNCATE)")
        except sqlite3.Error:
            pass  # a reader in the middle of a read: the next writer checkpoints
    finally:
        live.close()
    meta.close()
    keep = folder / f"vectors-{target}.faiss"
    for old in folder.glob("vectors-*.faiss*"):
        if old != keep:
            old.unlink(missing_ok=True)
    shutil.rmtree(staged, ignore_errors=True)
