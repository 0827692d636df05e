"""FAISS side of the index: index types, training, atomic files, GPU when present.

Vectors are L2-normalised, so inner product is cosine similarity. Every index
is wrapped in ``IndexIDMap2`` so chunks keep stable 64-bit ids across updates.
The FAISS file is derived data: SQLite holds the vectors, so a missing or stale
FAISS file is rebuilt rather than trusted (see ``meta.py``).
"""
from __future__ import annotations

import errno
import hashlib
import math
import os
import re
import sys
from collections.abc import Callable, Iterable
from pathlib import Path

import numpy as np

from ..errors import LLM2VecError

NAMED_TYPES = {"flat": "Flat", "hnsw": "HNSW32", "sq8": "SQ8", "ivf-pq": None}
HNSW_EF_CONSTRUCTION = 80
HNSW_EF_SEARCH = 96
IVF_NPROBE = 16
MIN_TRAIN_POINTS = 39  # per centroid, as FAISS recommends


def _faiss():
    import faiss

    return faiss


def pq_subquantizers(dim: int) -> int:
    """About 8 dimensions per sub-quantiser, a divisor of ``dim`` (576 -> 72)."""
    target = max(1, dim // 8)
    for m in range(target, 0, -1):
        if dim % m == 0:
            return m
    return 1


def factory_string(index_type: str, dim: int, n_vectors: int) -> str:
    """The FAISS factory string for a named type (``ivf-pq`` sized by ``n_vectors``) or a factory string."""
    if index_type in NAMED_TYPES and NAMED_TYPES[index_type] is not None:
        return NAMED_TYPES[index_type]  # type: ignore[return-value]
    if index_type == "ivf-pq":
        nlist = int(min(max(16, 4 * math.sqrt(max(n_vectors, 1))), max(1, n_vectors // MIN_TRAIN_POINTS)))
        nlist = 1 << max(4, int(round(math.log2(max(nlist, 16)))))
        return f"IVF{nlist},PQ{pq_subquantizers(dim)}x8"
    return index_type


def min_training_points(factory: str) -> int:
    """Vectors needed before a trainable type is worth training (below that: flat)."""
    need = 0
    ivf = re.search(r"IVF(\d+)", factory)
    if ivf:
        need = max(need, MIN_TRAIN_POINTS * int(ivf.group(1)))
    pq = re.search(r"PQ\d+(?:x(\d+))?", factory)
    if pq:
        bits = int(pq.group(1) or 8)
        need = max(need, MIN_TRAIN_POINTS * (1 << bits))
    return max(need, 256) if re.search(r"IVF|PQ|LSH|RQ|LSQ", factory) else 0


# Dimensions a factory string is parsed at before the model (and so the real dimension) is known.
_PROBE_DIMS = (64, 576, 768, 5040)


def faiss_message(exc: BaseException) -> str:
    """FAISS's error text without its C++ prefix (``Error in faiss::… at /path/file.cpp:123:``)."""
    text = " ".join(str(exc).split()) or type(exc).__name__
    text = re.sub(r"Error in .*? at [^ ]+:\d+: ", "", text)
    text = re.sub(r"\s*\(?[^ ]*\.(?:cpp|h):\d+\)?", "", text)
    return text.strip()[:160] or type(exc).__name__


def validate_index_type(index_type: str, dim: int | None = None) -> None:
    """Reject an unusable type now, with the choices, not after an hour of embedding.

    Without ``dim`` (the model is not loaded yet) the string only has to parse at one of a few
    common dimensions; with the real ``dim`` a throwaway index is built exactly as the index
    builds it (inside our ``IDMap2``) and, when it needs no training, given a few vectors and
    a search (training takes minutes, so a trainable type is only built here).
    """
    if index_type in NAMED_TYPES:
        return
    choices = "use flat, hnsw, ivf-pq, sq8 or a FAISS factory string"
    if not isinstance(index_type, str) or not index_type.strip():
        raise LLM2VecError(f"empty index type: {choices}")
    if re.match(r"\s*IDMap", index_type):
        raise LLM2VecError(f"index type {index_type!r}: leave out IDMap, llm2vec-rag maps ids itself "
                           f"(e.g. {index_type.split(',', 1)[-1].strip() or 'Flat'!r})")
    faiss = _faiss()
    if dim is None:
        error = None
        for probe in _PROBE_DIMS:
            try:
                faiss.index_factory(probe, index_type, faiss.METRIC_INNER_PRODUCT)
                return
            except Exception as exc:  # FAISS raises RuntimeError with a C++ location
                error = error or exc
        raise LLM2VecError(f"unknown index type {index_type!r}: {choices} ({faiss_message(error)})") from None
    try:
        index = new_index(index_type, dim)
        rng = np.random.default_rng(0)
        if not index.is_trained:
            return  # built at this dimension; training costs minutes, so it is checked (one line) when it runs
        vectors = rng.standard_normal((4, dim)).astype(np.float32)
        vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
        index.add_with_ids(vectors, np.arange(4, dtype=np.int64))
        configure_search(index)
        index.search(vectors[:1], 2)
    except Exception as exc:
        if not _parses(index_type):
            raise LLM2VecError(f"unknown index type {index_type!r}: {choices} ({faiss_message(exc)})") from None
        raise LLM2VecError(f"index type {index_type!r} does not work for {dim}-d vectors: {choices} "
                           f"({faiss_message(exc)})") from None


def _parses(index_type: str) -> bool:
    faiss = _faiss()
    for probe in _PROBE_DIMS:
        try:
            faiss.index_factory(probe, index_type, faiss.METRIC_INNER_PRODUCT)
            return True
        except Exception:
            pass
    return False


def new_index(factory: str, dim: int):
    """An empty ``IndexIDMap2`` around ``factory`` with inner-product metric and tuned search settings."""
    faiss = _faiss()
    inner = faiss.index_factory(dim, factory, faiss.METRIC_INNER_PRODUCT)
    hnsw = _find(inner, "hnsw")
    if hnsw is not None:
        hnsw.efConstruction = HNSW_EF_CONSTRUCTION
        hnsw.efSearch = HNSW_EF_SEARCH
    return faiss.IndexIDMap2(inner)


def _find(index, attr: str):
    faiss = _faiss()
    try:
        index = faiss.downcast_index(index)
    except Exception:
        pass
    return getattr(index, attr, None)


def configure_search(index, nprobe: int = IVF_NPROBE, ef_search: int = HNSW_EF_SEARCH) -> None:
    """Set nprobe (IVF) and efSearch (HNSW) on a freshly built or loaded index."""
    faiss = _faiss()
    inner = faiss.downcast_index(index.index) if hasattr(index, "index") else index
    if hasattr(inner, "nprobe"):
        inner.nprobe = nprobe
    if getattr(inner, "hnsw", None) is not None:
        inner.hnsw.efSearch = ef_search


def build_index(
    factory: str,
    dim: int,
    batches: Callable[[], Iterable[tuple[np.ndarray, np.ndarray]]],
    n_vectors: int,
    train_sample: Callable[[int], np.ndarray] | None = None,
    log: Callable[[str], None] | None = None,
) -> tuple[object, str]:
    """Build from ``batches()`` of (ids, vectors); train first when the type needs it.

    Returns the index and the factory actually used: a trainable type with too
    few vectors falls back to ``Flat`` (exact search), and says so.
    """
    try:
        index = new_index(factory, dim)
    except Exception as exc:
        raise LLM2VecError(f"the index type {factory!r} does not work ({faiss_message(exc)}): "
                           "re-run `llm2vec-rag index` with --index-type flat (no re-embedding)") from None
    if not index.is_trained:
        need = min_training_points(factory)
        if n_vectors < need or train_sample is None:
            if log:
                log(f"note: {factory} needs about {need} vectors to train, the index has {n_vectors}: "
                    f"using exact (flat) search until it grows")
            factory = "Flat"
            index = new_index(factory, dim)
        else:
            sample = train_sample(min(n_vectors, max(need, 100_000)))
            try:
                index.train(sample)
            except Exception as exc:
                raise LLM2VecError(f"training the {factory} index failed: {faiss_message(exc)}") from None
    for ids, vectors in batches():
        if len(ids):
            index.add_with_ids(np.ascontiguousarray(vectors, dtype=np.float32), np.asarray(ids, dtype=np.int64))
    configure_search(index)
    return index, factory


def supports_removal(index) -> bool:
    """HNSW graphs cannot drop vectors: those indexes are rebuilt instead."""
    faiss = _faiss()
    inner = faiss.downcast_index(index.index)
    return getattr(inner, "hnsw", None) is None


def remove_ids(index, ids: Iterable[int]) -> bool:
    """Remove ``ids``; False when this index type cannot (the caller rebuilds)."""
    arr = np.fromiter(ids, dtype=np.int64)
    if not len(arr):
        return True
    if not supports_removal(index):
        return False
    index.remove_ids(_faiss().IDSelectorBatch(arr))
    return True


def fsync_dir(folder: Path) -> None:
    """Make a rename inside ``folder`` durable (best effort: some file systems refuse)."""
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


CHECKSUM = "blake2b"


def file_checksum(path: Path) -> str:
    """``blake2b:<hex>`` of a file's bytes (the checksum recorded for each FAISS generation)."""
    digest = hashlib.blake2b(digest_size=16)
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            digest.update(block)
    return f"{CHECKSUM}:{digest.hexdigest()}"


def checksum_matches(path: Path, recorded: str | None) -> bool:
    """True when nothing was recorded (an index from before checksums) or the file's bytes match."""
    if not recorded:
        return True
    try:
        return file_checksum(path) == recorded
    except OSError:
        return False


def write_atomic(index, path: Path, before_rename: Callable[[], None] | None = None) -> str:
    """``faiss.write_index`` to a temporary file, fsync, rename into place, fsync the folder.

    Returns the file's checksum (see :func:`file_checksum`).
    """
    faiss = _faiss()
    tmp = path.with_name(path.name + ".tmp")
    try:
        faiss.write_index(to_cpu(index), str(tmp))
        with open(tmp, "rb") as fh:
            os.fsync(fh.fileno())
        checksum = file_checksum(tmp)
    except Exception as exc:  # FAISS reports a full disk as a RuntimeError with a C++ location
        tmp.unlink(missing_ok=True)
        raise _write_error(path, exc) from None
    if before_rename is not None:
        before_rename()
    os.replace(tmp, path)
    fsync_dir(path.parent)
    return checksum


def _write_error(path: Path, exc: BaseException) -> LLM2VecError:
    from ..errors import IndexReadOnlyError, IndexWriteError

    text = str(exc).lower()
    full = "no space" in text or isinstance(exc, OSError) and exc.errno == errno.ENOSPC
    if not full:
        try:
            full = os.statvfs(path.parent).f_bavail * os.statvfs(path.parent).f_frsize < (1 << 20)
        except OSError:
            pass
    if full:
        return IndexWriteError(f"no space left on the device of {path.parent} while writing {path.name}; the "
                               "stored chunks are kept and the FAISS file is rebuilt from them on the next run")
    if "read-only" in text or isinstance(exc, OSError) and exc.errno in (errno.EROFS, errno.EACCES):
        return IndexReadOnlyError(f"the index at {path.parent} is read-only: it can be searched, not changed")
    return LLM2VecError(f"cannot write {path} ({faiss_message(exc)})")


def read_index(path: Path, checksum: str | None = None):
    """The FAISS index in ``path``; with ``checksum``, its bytes are checked first (a mismatch raises)."""
    faiss = _faiss()
    if checksum:
        data = path.read_bytes()
        digest = hashlib.blake2b(data, digest_size=16).hexdigest()
        if f"{CHECKSUM}:{digest}" != checksum:
            raise LLM2VecError("its bytes do not match the recorded checksum (damaged on disk)")
        index = faiss.deserialize_index(np.frombuffer(data, dtype=np.uint8))
    else:
        index = faiss.read_index(str(path))
    if not isinstance(index, faiss.IndexIDMap2):
        index = faiss.downcast_index(index)
    configure_search(index)
    return index


# ------------------------------------------------------------------ GPU
def gpu_available() -> bool:
    """FAISS built with GPU support and at least one GPU (set LLM2VEC_RAG_FAISS_GPU=0 to stay on CPU)."""
    if os.environ.get("LLM2VEC_RAG_FAISS_GPU", "1") == "0":
        return False
    faiss = _faiss()
    try:
        return hasattr(faiss, "StandardGpuResources") and faiss.get_num_gpus() > 0
    except Exception:
        return False


_GPU_RESOURCES = None


def to_gpu(index):
    """The same index on GPU 0 when possible (flat and IVF types); unchanged otherwise."""
    global _GPU_RESOURCES
    if not gpu_available():
        return index
    faiss = _faiss()
    try:
        if _GPU_RESOURCES is None:
            _GPU_RESOURCES = faiss.StandardGpuResources()
        return faiss.index_cpu_to_gpu(_GPU_RESOURCES, 0, index)
    except Exception as exc:  # e.g. HNSW has no GPU version
        print(f"note: FAISS index stays on CPU ({str(exc).splitlines()[0][:100]})", file=sys.stderr)
        return index


def to_cpu(index):
    faiss = _faiss()
    if hasattr(faiss, "index_gpu_to_cpu") and "Gpu" in type(index).__name__:
        return faiss.index_gpu_to_cpu(index)
    return index


def _search_params(index):
    """Parameters of the type the inner index expects (IVF and HNSW check), with their settings."""
    faiss = _faiss()
    inner = faiss.downcast_index(index.index) if hasattr(index, "index") else index
    if isinstance(inner, faiss.IndexIVF):
        params = faiss.SearchParametersIVF()
        params.nprobe = inner.nprobe
        return params
    if getattr(inner, "hnsw", None) is not None:
        params = faiss.SearchParametersHNSW()
        params.efSearch = inner.hnsw.efSearch
        return params
    return faiss.SearchParameters()


def search(index, queries: np.ndarray, k: int, allowed: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Top-k (scores, ids) for each query row, optionally only among ``allowed`` ids."""
    faiss = _faiss()
    queries = np.ascontiguousarray(queries, dtype=np.float32)
    if allowed is None:
        return index.search(queries, k)
    selector = faiss.IDSelectorBatch(np.asarray(allowed, dtype=np.int64))
    params = _search_params(index)
    params.sel = selector
    try:
        return index.search(queries, k, params=params)
    except Exception:
        # Some index types (GPU) take no selector: over-fetch and filter.
        wanted = set(int(x) for x in allowed)
        fetch = min(index.ntotal, max(k * 20, 200))
        scores, ids = index.search(queries, fetch)
        out_s = np.full((len(queries), k), -np.inf, dtype=np.float32)
        out_i = np.full((len(queries), k), -1, dtype=np.int64)
        for row in range(len(queries)):
            keep = [(s, i) for s, i in zip(scores[row], ids[row]) if int(i) in wanted][:k]
            for col, (s, i) in enumerate(keep):
                out_s[row, col], out_i[row, col] = s, i
        return out_s, out_i
