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
from dataclasses import dataclass, field, fields
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


@dataclass(frozen=True)
class SyncOptions:
    """How :func:`sync_folder` indexes a folder; each field is also a keyword of ``Index.update`` and
    ``Index.build``. ``chunk_tokens``/``overlap`` left as None keep the index's own settings."""

    include: Sequence[str] = ()
    exclude: Sequence[str] = ()
    extensions: Sequence[str] | None = None
    max_file_mb: float = 20.0
    chunk_tokens: int | None = None
    overlap: int | None = None
    batch_size: int = 32
    commit_chunks: int | None = None
    progress: bool = True
    hidden: bool = False
    gitignore: bool = True
    token_counter: Any = None
    ray: str | bool | None = None
    ray_actors: int | None = None
    walked: WalkResult | None = None
    follow_symlinks: bool = False

    @property
    def use_ray(self) -> bool:
        return self.ray is not None and self.ray is not False


UPDATE_OPTIONS = frozenset(f.name for f in fields(SyncOptions))


def sync_folder(index: Index, folder: str | os.PathLike[str], options: SyncOptions | None = None,
                **keywords: Any) -> SyncReport:
    """Index ``folder`` into ``index`` incrementally and save; see the module docstring.

    Options: a :class:`SyncOptions`, or its fields as keywords.
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
    run = FolderSync(index, folder, options if options is not None else SyncOptions(**keywords))
    try:
        for candidate in run.found.files:
            run.prepare(candidate)
            if len(run.pending_rows) >= run.commit_chunks:
                run.flush()
        run.flush()
        report = run.finish()  # its notes (FAISS training on save) still go through the bar
    finally:
        run.close()
    report.seconds = time.perf_counter() - start_time
    return report


class FolderSync:
    """One :func:`sync_folder` run, in four steps: plan (settings and the walk, in ``__init__``),
    prepare (read and chunk each changed file), flush (embed a batch, in process or on Ray, and
    commit it with its files in one transaction), finish (drop vanished files, save)."""

    def __init__(self, index: Index, folder: str | os.PathLike[str], options: SyncOptions) -> None:
        self.index, self.options, self.log = index, options, index.log
        if options.use_ray:
            from .ray_embed import RAY_COMMIT_CHUNKS, require_ray

            require_ray()
            if options.ray_actors is not None and int(options.ray_actors) < 1:
                raise LLM2VecError(f"--ray-actors must be at least 1, got {options.ray_actors}")
        commit_chunks = options.commit_chunks
        if commit_chunks is None:
            commit_chunks = RAY_COMMIT_CHUNKS if options.use_ray else COMMIT_CHUNKS
        self.commit_chunks = max(1, int(commit_chunks))
        self.chunk_tokens, self.overlap = _chunking(index.info, options.chunk_tokens, options.overlap)
        max_length = index.info.get("max_length")
        if max_length and self.chunk_tokens > int(max_length):
            self.log(f"warning: --chunk-tokens {self.chunk_tokens} is more than the model reads ({max_length}); "
                     "chunk ends will be cut off when embedding")
        found = options.walked
        if found is None or Path(found.root) != _walk_root(folder):
            found = find_files(folder, index.path, options.include, options.exclude, options.extensions,
                               options.max_file_mb, options.hidden, options.gitignore, options.follow_symlinks)
        self.found = found
        self.report = SyncReport(skipped_reasons=Counter(found.skipped))
        for path, message in found.warnings:
            self._warn(display_path(path), message)
        self.root = path_key(str(found.root))
        self.recorded = index.meta.files_under(self.root)
        self.settings = _settings(self.chunk_tokens, self.overlap, index.info.get("fingerprint", ""))
        # A file indexed before that is now too large or unreadable keeps its chunks (with a warning).
        kept = {"too_large", "unreadable", "symlink_loop"}
        self.seen: set[str] = {path_key(p) for p, reason in found.problems.items()
                               if reason in kept and path_key(p) in self.recorded}
        self.pending_rows: list[ChunkRow] = []
        self.pending_files: list[dict[str, Any]] = []
        self.touch: list[dict[str, Any]] = []
        self._counter: Any = None
        self._embedder: Any = None  # the RayEmbedder, created on the first batch that has texts
        self.bar = self._progress_bar() if options.progress else None

    def _progress_bar(self) -> Any:
        from tqdm.auto import tqdm

        bar = tqdm(total=len(self.found.files), desc="Indexing", unit="file", file=sys.stderr)
        plain_log = self.log

        def log(message: str) -> None:  # each warning on its own line, the bar redrawn below it
            with bar.external_write_mode(file=sys.stderr):
                plain_log(message)

        self.plain_log = plain_log
        self.log = self.index.log = log  # the index's own notes (FAISS training, a stale file) as well
        return bar

    def counter(self) -> Any:
        """The token counter for chunking; the model loads only when a file needs chunking."""
        if self._counter is None:
            counter = self.options.token_counter
            self._counter = make_counter(counter if counter is not None else self.index.encoder)
        return self._counter

    # ------------------------------------------------------------------ prepare
    def prepare(self, candidate: Any) -> None:
        """One walked file: counted unchanged, skipped with a reason, or chunked into the pending batch."""
        path = path_key(str(candidate.path))  # how it is stored (lossless for non-UTF-8 names)
        shown = display_path(str(candidate.path))  # how it is shown (undecodable bytes as U+FFFD)
        self.seen.add(path)
        old = self.recorded.get(path)
        if self.bar is not None:
            self.bar.update(1)
        if (old and old["size"] == candidate.size and old["mtime_ns"] == candidate.mtime_ns
                and old["settings"] == self.settings):
            self.report.unchanged += 1
            return
        data = self._read(candidate, path, shown)
        if data is None:
            return
        digest = content_hash(data)
        if old and old["content_hash"] == digest and old["settings"] == self.settings:
            self.report.unchanged += 1
            self.touch.append({**old, "size": candidate.size, "mtime_ns": candidate.mtime_ns})
            return
        doc = self._document(candidate, data, shown)
        if doc is None:
            return
        chunks = chunk_document(doc, self.counter(), self.chunk_tokens, self.overlap)
        self._queue(candidate, path, shown, digest, doc, chunks)
        if old:
            self.report.updated += 1
        else:
            self.report.added += 1
        if self.bar is not None:
            self.bar.set_postfix(chunks=self.report.chunks_added + len(self.pending_rows), refresh=False)

    def _read(self, candidate: Any, path: str, shown: str) -> bytes | None:
        """The file's bytes, or None when it is skipped (vanished, no longer regular, unreadable)."""
        try:
            return read_regular_file(candidate.path)
        except FileNotFoundError:
            self.seen.discard(path)
            self._skip("vanished", shown, "file vanished while indexing, skipped")
        except NotRegularFileError:
            self.seen.discard(path)
            self._skip("unsupported", shown, "not a regular file any more (a FIFO, device or folder), skipped")
        except OSError as exc:
            self._skip("unreadable", shown, f"cannot read ({exc.strerror or exc}), skipped")
        return None

    def _document(self, candidate: Any, data: bytes, shown: str) -> Any:
        """The parsed document, or None when there is nothing to index (empty, binary, unreadable, no text)."""
        if not data:
            self._skip("empty", shown, "zero-byte file, skipped")
            return None
        if looks_binary(data) and candidate.path.suffix.lower() != ".pdf":
            self._skip("binary", shown, "binary content, skipped")
            return None
        try:
            doc = read_document(candidate.path, data)
        except UnreadableFileError as exc:
            self._skip("unreadable", shown, f"{exc}, skipped")
            return None
        for message in doc.extra.get("warnings", ()):  # what the reader's library said (pypdf)
            self._warn(shown, message)
        if not doc.text.strip():
            self._skip("no_text", shown, "no text to index, skipped")
            return None
        return doc

    def _queue(self, candidate: Any, path: str, shown: str, digest: str, doc: Any, chunks: Sequence[Any]) -> None:
        mtime = candidate.mtime_ns / 1e9
        for c in chunks:
            self.pending_rows.append(ChunkRow(
                f"{path}#{c.chunk}", c.text, None, file=path, source=shown, chunk=c.chunk, heading=c.heading,
                page=c.page, start=c.start, end=c.end,
                metadata={"source": shown, "rel": display_path(candidate.rel), "chunk": c.chunk, "start": c.start,
                          "end": c.end, "heading": c.heading, "page": c.page, "title": doc.title, "kind": doc.kind,
                          "mtime": mtime, "content_hash": digest, "chunk_hash": c.hash, "tokens": c.tokens},
            ))
        self.pending_files.append({"path": path, "root": self.root, "rel": path_key(candidate.rel),
                                   "size": candidate.size, "mtime_ns": candidate.mtime_ns, "content_hash": digest,
                                   "settings": self.settings, "chunks": len(chunks), "indexed_at": time.time()})

    def _warn(self, shown: str, message: str) -> None:
        self.report.warnings.append(f"{shown}: {message}")
        self.log(f"warning: {shown}: {message}")

    def _skip(self, reason: str, shown: str, message: str) -> None:
        self.report.skipped_reasons[reason] += 1
        self._warn(shown, message)

    # ------------------------------------------------------------ embed, commit
    def flush(self) -> None:
        """Embed the pending chunks and commit them with their files in one transaction."""
        if not self.pending_files:
            return
        vectors = self.embed([embedding_text(r.heading, r.text) for r in self.pending_rows])
        for row, vector in zip(self.pending_rows, vectors):
            row.vector = vector
        added, removed = self.index.commit(self.pending_rows, file_rows=self.pending_files)
        self.report.chunks_added += added
        self.report.chunks_removed += removed
        self.pending_rows.clear()
        self.pending_files.clear()

    def embed(self, texts: list[str]) -> Any:
        """Normalised vectors for ``texts``: the index's encoder, or Ray actors (started on first use)."""
        if not texts:
            return []
        options = self.options
        if not options.use_ray:
            return self.index.embed_documents(texts, options.batch_size)
        if self._embedder is None:
            from .ray_embed import RayEmbedder

            self._embedder = RayEmbedder(self.index, options.ray, options.ray_actors, options.batch_size, log=self.log)
        return self._embedder(texts)

    def close(self) -> None:
        if self.bar is not None:
            self.index.log = self.plain_log
            self.bar.close()
        if self._embedder is not None:
            self._embedder.close()

    def finish(self) -> SyncReport:
        """Drop the files that are gone, record touched files and the chunk settings, save; the totals."""
        index, report = self.index, self.report
        gone = [p for p in self.recorded if p not in self.seen]
        if gone:
            _, removed = index.commit(remove_files=gone)
            report.removed = len(gone)
            report.chunks_removed += removed
            crash_point_removed()
        if self.touch:
            with index.meta.transaction() as conn:
                conn.executemany("UPDATE files SET size = ?, mtime_ns = ? WHERE path = ?",
                                 [(t["size"], t["mtime_ns"], t["path"]) for t in self.touch])
        if index.info.get("chunk_tokens") != self.chunk_tokens or index.info.get("overlap") != self.overlap:
            with index.meta.transaction() as conn:
                index.meta.set_info({"chunk_tokens": self.chunk_tokens, "overlap": self.overlap}, conn)
            index.info = index.meta.info()
        index.save()
        report.skipped = sum(n for r, n in report.skipped_reasons.items())
        report.total_chunks = len(index)
        report.total_files = index.meta.file_count()
        return report


def _chunking(info: dict[str, Any], chunk_tokens: int | None, overlap: int | None) -> tuple[int, int]:
    """The chunk settings to use: as given, else the ones this index was last built with (so a re-run
    does not re-chunk), else 256/32."""
    chunk_tokens = int(info.get("chunk_tokens", 256)) if chunk_tokens is None else int(chunk_tokens)
    if overlap is None:
        overlap = int(info.get("overlap", 32))
        overlap = overlap if overlap < chunk_tokens else chunk_tokens // 8
    overlap = int(overlap)
    check_chunking(chunk_tokens, overlap)
    return chunk_tokens, overlap


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


def check_update(folder: str | os.PathLike[str], index_path: str | os.PathLike[str], rebuild: bool = False,
                 **options: Any) -> WalkResult:
    """Everything about an update that can be checked before an index is opened or a model loaded.

    ``rebuild``: the update starts a new index (so no recorded chunk size applies).
    Returns the walk (pass it to :func:`sync_folder` as ``walked`` so the folder is walked once).
    """
    chunk_tokens, overlap = options.get("chunk_tokens"), options.get("overlap")
    if chunk_tokens is None and overlap is not None:  # compared with the chunk size the update will use
        chunk_tokens = _chunk_tokens_of(Path(index_path), rebuild)
    check_chunking(chunk_tokens, overlap)
    if options.get("ray_actors") is not None and int(options["ray_actors"]) < 1:
        raise LLM2VecError(f"--ray-actors must be at least 1, got {options['ray_actors']}")
    names = ("include", "exclude", "extensions", "max_file_mb", "hidden", "gitignore", "follow_symlinks")
    return find_files(folder, index_path, **{k: options[k] for k in names if k in options})


def _chunk_tokens_of(index_path: Path, rebuild: bool) -> int:
    """The chunk size an update without ``--chunk-tokens`` uses: the index's last one, else 256."""
    from .rebuild import live_info

    info = None if rebuild else live_info(index_path.expanduser())
    return int((info or {}).get("chunk_tokens", 256))


def crash_point_removed() -> None:
    from .faults import crash_point

    crash_point("removed")
