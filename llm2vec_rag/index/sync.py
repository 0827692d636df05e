"""Incremental indexing of a folder: embed only new or changed files, drop deleted ones.

A file is unchanged when its size and mtime match the recorded ones, or else
when its content hash does (so ``touch`` costs a read, not an embedding); a
change of chunking settings re-chunks every file. Work is committed in batches
of whole files, one SQLite transaction each, so a killed run keeps what it
finished and the next run does only the rest. Memory holds one batch of
chunks at a time, plus the FAISS index itself.

With ``ray`` set, the embedding of each batch runs on a Ray cluster (see
``ray_embed``); reading, chunking and committing stay in this process.
"""
from __future__ import annotations

import json
import os
import sys
import time
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ..errors import LLM2VecError
from .chunk import chunk_document, make_counter
from .ingest import (NotRegularFileError, WalkResult, content_hash, display_path, normalise_extensions, path_key,
                     read_regular_file, walk)
from .readers import UnreadableFileError, looks_binary, read_document
from .records import ChunkRow

if TYPE_CHECKING:  # pragma: no cover
    from .index import Index

CHUNKER_VERSION = 1
UPDATE_OPTIONS = {"include", "exclude", "extensions", "max_file_mb", "chunk_tokens", "overlap", "batch_size",
                  "commit_chunks", "progress", "hidden", "gitignore", "token_counter", "ray", "ray_actors", "walked",
                  "follow_symlinks"}
COMMIT_CHUNKS = 256


@dataclass
class SyncReport:
    """What one ``index`` run did, file by file (chunks in brackets)."""

    added: int = 0
    updated: int = 0
    removed: int = 0
    unchanged: int = 0
    skipped: int = 0
    chunks_added: int = 0
    chunks_removed: int = 0
    skipped_reasons: Counter = field(default_factory=Counter)
    warnings: list[str] = field(default_factory=list)
    seconds: float = 0.0
    total_chunks: int = 0
    total_files: int = 0

    def to_dict(self) -> dict[str, Any]:
        return {
            "added": self.added, "updated": self.updated, "removed": self.removed, "unchanged": self.unchanged,
            "skipped": self.skipped, "chunks_added": self.chunks_added, "chunks_removed": self.chunks_removed,
            "skipped_reasons": dict(self.skipped_reasons), "warnings": list(self.warnings),
            "seconds": round(self.seconds, 3), "total_chunks": self.total_chunks, "total_files": self.total_files,
        }

    def summary(self) -> str:
        reasons = ", ".join(f"{n} {r.replace('_', ' ')}" for r, n in sorted(self.skipped_reasons.items()))
        return (f"added {self.added}, updated {self.updated}, removed {self.removed}, unchanged {self.unchanged}, "
                f"skipped {self.skipped}{f' ({reasons})' if reasons else ''}; "
                f"{self.chunks_added} chunks embedded, {self.chunks_removed} removed; "
                f"index holds {self.total_chunks} chunks from {self.total_files} files ({self.seconds:.1f}s)")


def _settings(chunk_tokens: int, overlap: int, fingerprint: str) -> str:
    return json.dumps({"chunker": CHUNKER_VERSION, "chunk_tokens": chunk_tokens, "overlap": overlap,
                       "model": fingerprint}, sort_keys=True)


def embedding_text(heading: str, text: str) -> str:
    """What gets embedded: the heading path (context a chunk alone lacks), then the chunk."""
    return f"{heading}\n{text}" if heading and not text.lstrip().startswith(heading.rsplit(" > ", 1)[-1]) else text


def sync_folder(
    index: Index,
    folder: str | os.PathLike[str],
    include: Sequence[str] = (),
    exclude: Sequence[str] = (),
    extensions: Sequence[str] | None = None,
    max_file_mb: float = 20.0,
    chunk_tokens: int | None = None,
    overlap: int | None = None,
    batch_size: int = 32,
    commit_chunks: int | None = None,
    progress: bool = True,
    hidden: bool = False,
    gitignore: bool = True,
    token_counter: Any = None,
    ray: str | bool | None = None,
    ray_actors: int | None = None,
    walked: WalkResult | None = None,
    follow_symlinks: bool = False,
) -> SyncReport:
    """Index ``folder`` into ``index`` incrementally and save; see the module docstring.

    ``commit_chunks``: chunks embedded and committed together (default 256; 4096 with Ray).
    ``ray``: embed with Ray Data actors instead of the in-process model: ``True`` or ``"local"``
    starts (or joins) a local Ray runtime, ``"auto"`` or ``"ray://host:10001"`` connects to a
    cluster; ``ray_actors`` sets the actor count (default: one per GPU, else CPUs // 4).
    Every batch is one Ray Data execution, which starts its actors (and loads the model in
    each) again, so with Ray batches are large (``RAY_COMMIT_CHUNKS`` = 4096 chunks) to amortise
    that start-up; a smaller ``commit_chunks`` loses less work to a crash but restarts more often.
    Ray is started only when something needs embedding: an unchanged re-run never touches it.
    """
    start_time = time.perf_counter()
    log = index.log
    use_ray = ray is not None and ray is not False
    if use_ray:
        from .ray_embed import RAY_COMMIT_CHUNKS, require_ray

        require_ray()
        if ray_actors is not None and int(ray_actors) < 1:
            raise LLM2VecError(f"--ray-actors must be at least 1, got {ray_actors}")
    if commit_chunks is None:
        commit_chunks = RAY_COMMIT_CHUNKS if use_ray else COMMIT_CHUNKS
    commit_chunks = max(1, int(commit_chunks))
    embedder: list[Any] = []  # the RayEmbedder, created on the first batch that has texts
    # None: the settings this index was last built with (so a re-run does not re-chunk), else 256/32.
    chunk_tokens = int(index.info.get("chunk_tokens", 256)) if chunk_tokens is None else int(chunk_tokens)
    if overlap is None:
        overlap = int(index.info.get("overlap", 32))
        overlap = overlap if overlap < chunk_tokens else chunk_tokens // 8
    overlap = int(overlap)
    check_chunking(chunk_tokens, overlap)
    max_length = index.info.get("max_length")
    if max_length and chunk_tokens > int(max_length):
        log(f"warning: --chunk-tokens {chunk_tokens} is more than the model reads ({max_length}); "
            "chunk ends will be cut off when embedding")
    if walked is None or Path(walked.root) != _walk_root(folder):
        walked = find_files(folder, index.path, include, exclude, extensions, max_file_mb, hidden, gitignore,
                            follow_symlinks)
    found = walked
    report = SyncReport(skipped_reasons=Counter(found.skipped))
    for path, message in found.warnings:
        report.warnings.append(f"{display_path(path)}: {message}")
        log(f"warning: {display_path(path)}: {message}")
    root = path_key(str(found.root))
    recorded = index.meta.files_under(root)
    settings = _settings(chunk_tokens, overlap, index.info.get("fingerprint", ""))
    counter_cache: list[Any] = []

    def counter() -> Any:  # the model loads only when a file needs chunking
        if not counter_cache:
            counter_cache.append(make_counter(token_counter if token_counter is not None else index.encoder))
        return counter_cache[0]

    # A file indexed before that is now too large or unreadable keeps its chunks (with a warning).
    seen: set[str] = {path_key(p) for p, reason in found.problems.items()
                      if reason in {"too_large", "unreadable", "symlink_loop"} and path_key(p) in recorded}
    pending_rows: list[Any] = []
    pending_files: list[dict[str, Any]] = []
    touch: list[dict[str, Any]] = []

    def flush() -> None:
        if not pending_files:
            return
        texts = [embedding_text(r.heading, r.text) for r in pending_rows]
        if texts and use_ray:
            if not embedder:
                from .ray_embed import RayEmbedder

                embedder.append(RayEmbedder(index, ray, ray_actors, batch_size, log=log))
            vectors = embedder[0](texts)
        else:
            vectors = index.embed_documents(texts, batch_size) if texts else []
        for row, vector in zip(pending_rows, vectors):
            row.vector = vector
        added, removed = index.commit(pending_rows, file_rows=pending_files)
        report.chunks_added += added
        report.chunks_removed += removed
        pending_rows.clear()
        pending_files.clear()

    bar = None
    if progress:
        from tqdm.auto import tqdm

        bar = tqdm(total=len(found.files), desc="Indexing", unit="file", file=sys.stderr)
        plain_log = log

        def log(message: str) -> None:  # each warning on its own line, the bar redrawn below it
            with bar.external_write_mode(file=sys.stderr):
                plain_log(message)
    try:
        for cand in found.files:
            path = path_key(str(cand.path))  # how it is stored (lossless for non-UTF-8 names)
            shown = display_path(str(cand.path))  # how it is shown (undecodable bytes as U+FFFD)
            seen.add(path)
            old = recorded.get(path)
            if bar is not None:
                bar.update(1)
            if old and old["size"] == cand.size and old["mtime_ns"] == cand.mtime_ns and old["settings"] == settings:
                report.unchanged += 1
                continue
            try:
                data = read_regular_file(cand.path)
            except FileNotFoundError:
                seen.discard(path)
                _skip(report, log, "vanished", shown, "file vanished while indexing, skipped")
                continue
            except NotRegularFileError:
                seen.discard(path)
                _skip(report, log, "unsupported", shown, "not a regular file any more (a FIFO, device or folder), "
                                                         "skipped")
                continue
            except OSError as exc:
                _skip(report, log, "unreadable", shown, f"cannot read ({exc.strerror or exc}), skipped")
                continue
            digest = content_hash(data)
            if old and old["content_hash"] == digest and old["settings"] == settings:
                report.unchanged += 1
                touch.append({**old, "size": cand.size, "mtime_ns": cand.mtime_ns})
                continue
            if not data:
                _skip(report, log, "empty", shown, "zero-byte file, skipped")
                continue
            if looks_binary(data) and cand.path.suffix.lower() != ".pdf":
                _skip(report, log, "binary", shown, "binary content, skipped")
                continue
            try:
                doc = read_document(cand.path, data)
            except UnreadableFileError as exc:
                _skip(report, log, "unreadable", shown, f"{exc}, skipped")
                continue
            for message in doc.extra.get("warnings", ()):  # what the reader's library said (pypdf)
                report.warnings.append(f"{shown}: {message}")
                log(f"warning: {shown}: {message}")
            if not doc.text.strip():
                _skip(report, log, "no_text", shown, "no text to index, skipped")
                continue
            chunks = chunk_document(doc, counter(), chunk_tokens, overlap)
            mtime = cand.mtime_ns / 1e9
            for c in chunks:
                pending_rows.append(ChunkRow(
                    f"{path}#{c.chunk}", c.text, None, file=path, source=shown, chunk=c.chunk, heading=c.heading,
                    page=c.page, start=c.start, end=c.end,
                    metadata={"source": shown, "rel": display_path(cand.rel), "chunk": c.chunk, "start": c.start, "end": c.end,
                              "heading": c.heading, "page": c.page, "title": doc.title, "kind": doc.kind,
                              "mtime": mtime, "content_hash": digest, "chunk_hash": c.hash, "tokens": c.tokens},
                ))
            pending_files.append({"path": path, "root": root, "rel": path_key(cand.rel), "size": cand.size,
                                  "mtime_ns": cand.mtime_ns, "content_hash": digest, "settings": settings,
                                  "chunks": len(chunks), "indexed_at": time.time()})
            if old:
                report.updated += 1
            else:
                report.added += 1
            if bar is not None:
                bar.set_postfix(chunks=report.chunks_added + len(pending_rows), refresh=False)
            if len(pending_rows) >= commit_chunks:
                flush()
        flush()
    finally:
        if bar is not None:
            bar.close()
        if embedder:
            embedder[0].close()
    gone = [p for p in recorded if p not in seen]
    if gone:
        _, removed = index.commit(remove_files=gone)
        report.removed = len(gone)
        report.chunks_removed += removed
        crash_point_removed()
    if touch:
        with index.meta.transaction() as conn:
            conn.executemany("UPDATE files SET size = ?, mtime_ns = ? WHERE path = ?",
                             [(t["size"], t["mtime_ns"], t["path"]) for t in touch])
    if index.info.get("chunk_tokens") != chunk_tokens or index.info.get("overlap") != overlap:
        with index.meta.transaction() as conn:
            index.meta.set_info({"chunk_tokens": chunk_tokens, "overlap": overlap}, conn)
        index.info = index.meta.info()
    index.save()
    report.skipped = sum(n for r, n in report.skipped_reasons.items())
    report.total_chunks = len(index)
    report.total_files = index.meta.file_count()
    report.seconds = time.perf_counter() - start_time
    return report


def check_chunking(chunk_tokens: int | None, overlap: int | None) -> None:
    """Chunk settings that cannot work; ``None`` (the index's own setting) is checked later."""
    if chunk_tokens is not None and int(chunk_tokens) < 8:
        raise LLM2VecError(f"--chunk-tokens must be at least 8, got {chunk_tokens}")
    if overlap is not None and int(overlap) < 0:
        raise LLM2VecError(f"--overlap must be between 0 and {(chunk_tokens or 256) - 1}, got {overlap}")
    if chunk_tokens is not None and overlap is not None and not int(overlap) < int(chunk_tokens):
        raise LLM2VecError(f"--overlap must be between 0 and {int(chunk_tokens) - 1}, got {overlap}")


def _walk_root(folder: str | os.PathLike[str]) -> Path:
    path = Path(folder).expanduser().resolve()
    return path.parent if path.is_file() else path


def find_files(folder: str | os.PathLike[str], index_path: str | os.PathLike[str] | None = None,
               include: Sequence[str] = (), exclude: Sequence[str] = (), extensions: Sequence[str] | None = None,
               max_file_mb: float = 20.0, hidden: bool = False, gitignore: bool = True,
               follow_symlinks: bool = False) -> WalkResult:
    """The files an update would read; an error (changing nothing) when there are none."""
    if extensions is not None and not normalise_extensions(extensions):
        raise LLM2VecError("--ext names no extension (give e.g. --ext md,txt)")
    if max_file_mb <= 0:
        raise LLM2VecError(f"--max-file-mb must be positive, got {max_file_mb}")
    found = walk(folder, include, exclude, extensions, max_file_mb, hidden, gitignore,
                 skip_dirs=[Path(index_path)] if index_path is not None else [], follow_symlinks=follow_symlinks)
    if not found.files:
        reasons = ", ".join(f"{n} {r.replace('_', ' ')}" for r, n in sorted(found.skipped.items())) or "it is empty"
        raise LLM2VecError(f"no files to index in {folder} ({reasons}); nothing was changed")
    return found


def check_update(folder: str | os.PathLike[str], index_path: str | os.PathLike[str], **options: Any) -> WalkResult:
    """Everything about an update that can be checked before an index is opened or a model loaded.

    Returns the walk (pass it to :func:`sync_folder` as ``walked`` so the folder is walked once).
    """
    check_chunking(options.get("chunk_tokens"), options.get("overlap"))
    if options.get("ray_actors") is not None and int(options["ray_actors"]) < 1:
        raise LLM2VecError(f"--ray-actors must be at least 1, got {options['ray_actors']}")
    names = ("include", "exclude", "extensions", "max_file_mb", "hidden", "gitignore", "follow_symlinks")
    return find_files(folder, index_path, **{k: options[k] for k in names if k in options})


def crash_point_removed() -> None:
    from .faults import crash_point

    crash_point("removed")


def _skip(report: SyncReport, log, reason: str, path: str, message: str) -> None:
    report.skipped_reasons[reason] += 1
    report.warnings.append(f"{path}: {message}")
    log(f"warning: {path}: {message}")
