"""Query latency (p50/p95, one query at a time) and recall@10 against exact search, for flat, HNSW and IVF-PQ.

    python benchmarks/index_ann.py --n 100000
    python benchmarks/index_ann.py --n 1000000 --embed-model smollm2-135m

Vectors are synthetic, dim 576 (SmolLM2-135M's): a mixture of 2,000 Gaussian clusters, normalised,
which has the clustered shape of real embeddings (uniform random vectors are a worst case no real
corpus looks like). Queries come from the same distribution and are not in the index. The data is
generated in seeded blocks of 50k rows, so 1M vectors never exist twice in memory; the exact
top-10 is computed blockwise before any index is built, and each index is freed before the next.
The indexes are built exactly as ``llm2vec_rag.index.store`` builds them for ``--index-type``.
With ``--embed-model``, the end-to-end figure adds the real model embedding each query.
Prints one JSON line per index type.
"""
from __future__ import annotations

import argparse
import gc
import json
import os
import resource
import time

import numpy as np

DIM = 576
BLOCK = 50_000


def centers(n_clusters: int, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).standard_normal((n_clusters, DIM)).astype(np.float32)


def block(i: int, rows: int, c: np.ndarray, spread: float = 0.9) -> np.ndarray:
    rng = np.random.default_rng(1000 + i)
    x = c[rng.integers(0, len(c), rows)] + spread * rng.standard_normal((rows, DIM)).astype(np.float32)
    return (x / np.linalg.norm(x, axis=1, keepdims=True)).astype(np.float32)


def blocks(n: int, c: np.ndarray):
    for start in range(0, n, BLOCK):
        rows = min(BLOCK, n - start)
        yield np.arange(start, start + rows, dtype=np.int64), block(start // BLOCK, rows, c)


def exact_top10(n: int, queries: np.ndarray, c: np.ndarray) -> np.ndarray:
    best_s = np.full((len(queries), 10), -np.inf, dtype=np.float32)
    best_i = np.zeros((len(queries), 10), dtype=np.int64)
    for ids, x in blocks(n, c):
        s = queries @ x.T
        both_s = np.concatenate([best_s, s], axis=1)
        both_i = np.concatenate([best_i, np.broadcast_to(ids, s.shape)], axis=1)
        top = np.argpartition(-both_s, 9, axis=1)[:, :10]
        best_s, best_i = np.take_along_axis(both_s, top, 1), np.take_along_axis(both_i, top, 1)
    return best_i


def percentile_ms(samples: list[float], q: float) -> float:
    return round(float(np.percentile(np.asarray(samples) * 1000, q)), 3)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n", type=int, default=100_000)
    ap.add_argument("--types", default="flat,hnsw,ivf-pq")
    ap.add_argument("--queries", type=int, default=200)
    ap.add_argument("--clusters", type=int, default=2000)
    ap.add_argument("--embed-model", default=None, help="also time embedding each query with this model")
    ap.add_argument("--threads", type=int, default=1,
                    help="FAISS OpenMP threads (1: per-query latency without thread contention on a shared machine)")
    args = ap.parse_args()
    import faiss

    faiss.omp_set_num_threads(args.threads)

    from llm2vec_rag.index import store

    c = centers(args.clusters)
    queries = block(99_999, args.queries, c)
    truth = exact_top10(args.n, queries, c)
    embed_times: list[float] = []
    encoder = None
    if args.embed_model:
        from llm2vec_rag.index.model import load_encoder

        encoder = load_encoder(args.embed_model)
        encoder.encode_queries(["warm up"], show_progress_bar=False)
    texts = [f"how does claim number {i} about protein folding hold up?" for i in range(args.queries)]
    for kind in args.types.split(","):
        factory = store.factory_string(kind, DIM, args.n)
        t0 = time.perf_counter()
        index, used = store.build_index(
            factory, DIM, lambda: blocks(args.n, c), args.n,
            lambda m: np.concatenate([block(500 + j, min(BLOCK, m - j * BLOCK), c) for j in range(-(-m // BLOCK))]),
            log=print,
        )
        build_s = time.perf_counter() - t0
        latencies, end_to_end = [], []
        found = np.zeros((args.queries, 10), dtype=np.int64)
        for qi in range(args.queries):
            q = queries[qi : qi + 1]
            t0 = time.perf_counter()
            if encoder is not None and qi < 50:
                encoder.encode_queries([texts[qi]], show_progress_bar=False, normalize_embeddings=True)
            t1 = time.perf_counter()
            _, ids = store.search(index, q, 10)
            t2 = time.perf_counter()
            found[qi] = ids[0]
            latencies.append(t2 - t1)
            if encoder is not None and qi < 50:
                end_to_end.append(t2 - t0)
                embed_times.append(t1 - t0)
        recall = float(np.mean([len(set(found[i]) & set(truth[i])) / 10 for i in range(args.queries)]))
        row = {"n": args.n, "dim": DIM, "type": kind, "factory": used, "build_s": round(build_s, 1),
               "search_p50_ms": percentile_ms(latencies, 50), "search_p95_ms": percentile_ms(latencies, 95),
               "recall@10": round(recall, 4), "queries": args.queries,
               "peak_rss_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024),
               "threads": args.threads, "load_avg_1m": round(os.getloadavg()[0], 1)}
        if end_to_end:
            row.update({"embed_model": args.embed_model, "end_to_end_p50_ms": percentile_ms(end_to_end, 50),
                        "end_to_end_p95_ms": percentile_ms(end_to_end, 95)})
        print(json.dumps(row), flush=True)
        del index
        gc.collect()


if __name__ == "__main__":
    main()
