"""FAISS side of the index: index types, training, atomic files, GPU when present.

Vectors are L2-normalised, so inner product is cosine similarity. Every index
is wrapped in ``IndexIDMap2`` so chunks keep stable 64-bit ids across updates.
The FAISS file is derived data: SQLite holds the vectors, so a missing or stale
FAISS file is rebuilt rather than trusted (see ``meta.py``).
"""
from __future__ import annotations

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


def validate_index_type(index_type: str, dim: int = 64) -> None:
    """Reject an unknown type now, with the list of choices, not after an hour of embedding."""
    if index_type in NAMED_TYPES:
        return
    try:
        _faiss().index_factory(dim, index_type, _faiss().METRIC_INNER_PRODUCT)
    except Exception as exc:  # FAISS raises RuntimeError with a C++ trace
        first = str(exc).strip().splitlines()[0][:160] if str(exc).strip() else type(exc).__name__
        raise LLM2VecError(
            f"unknown index type {index_type!r}: use flat, hnsw, ivf-pq, sq8 or a FAISS factory string ({first})"
        ) from None


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
    index = new_index(factory, dim)
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
                raise LLM2VecError(f"training the {factory} index failed: {str(exc).splitlines()[0][:160]}") from None
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


def _fsync_dir(folder: Path) -> None:
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


def write_atomic(index, path: Path, before_rename: Callable[[], None] | None = None) -> None:
    """``faiss.write_index`` to a temporary file, fsync, rename into place, fsync the folder."""
    faiss = _faiss()
    tmp = path.with_name(path.name + ".tmp")
    faiss.write_index(to_cpu(index), str(tmp))
    with open(tmp, "rb") as fh:
        os.fsync(fh.fileno())
    if before_rename is not None:
        before_rename()
    os.replace(tmp, path)
    _fsync_dir(path.parent)


def read_index(path: Path):
    faiss = _faiss()
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
