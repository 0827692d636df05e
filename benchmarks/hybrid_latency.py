"""Query latency of each search mode on a large index, and what the lexical table costs to build and store.

Builds two indexes of ``--chunks`` WikiText-2 passages (about 60 words each) with the
default model's dimension — one with the lexical (FTS5) table, one without it (its
triggers dropped before any row is written) — using random unit vectors: the cost of a
FAISS search does not depend on what the vectors hold, and embedding 100k chunks would
take this CPU hours. Then times ``Index.search`` per mode for SciFact test claims as
queries (the query vector given, so the search alone is timed) and, separately, the
real default model embedding those queries one at a time.

    python benchmarks/hybrid_latency.py --chunks 100000 --queries 100
"""
from __future__ import annotations

import argparse
import gzip
import json
import os
import platform
import shutil
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
DATA = Path(os.environ.get("LLM2VEC_RAG_DATA", REPO.parent / "shared" / "data")).resolve()


class _Dim:
    """Stands in for the encoder when writing precomputed vectors: the index only asks for these."""

    def __init__(self, dim: int) -> None:
        self.dim, self.name, self.pooling_mode, self.max_length = dim, "random-vectors", "mean", 512
        self.query_instruction, self.document_instruction = "", ""

    def fingerprint(self) -> str:
        return f"random-{self.dim}"


def passages(n: int, words: int = 60) -> list[str]:
    with gzip.open(DATA / "wikitext-2-raw" / "train.raw.gz", "rt", encoding="utf-8") as fh:
        text = fh.read().split()
    out, i = [], 0
    while len(out) < n:
        start = (i * words) % max(1, len(text) - words)
        out.append(f"{len(out)} " + " ".join(text[start : start + words]))
        i += 1
    return out


def build(path: Path, texts: list[str], vectors: np.ndarray, lexical: bool) -> dict:
    from llm2vec_rag import Index

    index = Index.create(path, _Dim(vectors.shape[1]), log=lambda m: None)
    if not lexical:
        for trigger in ("insert", "delete", "update"):
            index.meta.conn.execute(f"DROP TRIGGER chunks_fts_{trigger}")
        index.meta.conn.execute("DROP TABLE chunks_fts")
    start = time.perf_counter()
    for s in range(0, len(texts), 8192):
        index.add_embeddings(texts[s : s + 8192], vectors[s : s + 8192], ids=[str(i) for i in range(s, s + 8192)][
            : len(texts[s : s + 8192])])
    index.close()
    seconds = time.perf_counter() - start
    size = sum(p.stat().st_size for p in path.iterdir() if p.is_file())
    return {"build_s": round(seconds, 1), "size_mb": round(size / 1e6, 1),
            "meta_sqlite_mb": round((path / "meta.sqlite").stat().st_size / 1e6, 1)}


def percentiles(samples: list[float]) -> dict:
    ms = np.asarray(samples) * 1000
    return {"p50_ms": round(float(np.percentile(ms, 50)), 2), "p95_ms": round(float(np.percentile(ms, 95)), 2)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--chunks", type=int, default=100_000)
    parser.add_argument("--queries", type=int, default=100)
    parser.add_argument("--dim", type=int, default=576)
    parser.add_argument("--model", default="smollm2-135m", help="for the query-embedding time ('' to skip)")
    parser.add_argument("--out", default=str(REPO / "benchmarks" / "results" / "hybrid_latency.json"))
    args = parser.parse_args()

    from llm2vec_rag import Index
    from llm2vec_rag.index import lexical
    from llm2vec_rag.index.hybrid import SearchSettings, fuse

    texts = passages(args.chunks)
    rng = np.random.default_rng(0)
    vectors = rng.standard_normal((len(texts), args.dim), dtype=np.float32)
    claims = [json.loads(line)["text"] for line in (DATA / "scifact" / "queries.jsonl").open(encoding="utf-8")]
    claims = claims[: args.queries]
    qvecs = rng.standard_normal((len(claims), args.dim), dtype=np.float32)
    work = Path(tempfile.mkdtemp(prefix="hybrid-latency-"))
    result: dict = {"chunks": len(texts), "queries": len(claims), "dim": args.dim, "host": platform.processor()
                    or platform.machine(), "cpus": os.cpu_count(),
                    "command": "python benchmarks/hybrid_latency.py " + " ".join(sys.argv[1:])}
    try:
        print("building without the lexical table ...", file=sys.stderr)
        result["without_lexical"] = build(work / "plain", texts, vectors, lexical=False)
        print("building with the lexical table ...", file=sys.stderr)
        result["with_lexical"] = build(work / "hybrid", texts, vectors, lexical=True)
        shutil.rmtree(work / "plain")
        index = Index.load(work / "hybrid", _Dim(args.dim), log=lambda m: None)
        index.search(claims[0], k=10, mode="hybrid", query_vector=qvecs[0])  # load FAISS once
        modes = {}
        for mode in ("dense", "lexical", "hybrid"):
            times = []
            for claim, qv in zip(claims, qvecs):
                start = time.perf_counter()
                index.search(claim, k=10, mode=mode, query_vector=None if mode == "lexical" else qv)
                times.append(time.perf_counter() - start)
            modes[mode] = percentiles(times)
        # the pieces of a hybrid search, timed alone
        settings = SearchSettings.of("hybrid")
        lex_t, fuse_t = [], []
        for claim, qv in zip(claims, qvecs):
            start = time.perf_counter()
            lex = lexical.search(index.meta.conn, claim, settings.candidates)
            lex_t.append(time.perf_counter() - start)
            dense = [(i, float(s)) for i, s in zip(range(100), np.linspace(1, 0, 100))]
            start = time.perf_counter()
            fuse(dense, lex, settings, 10)
            fuse_t.append(time.perf_counter() - start)
        modes["lexical_top100_alone"] = percentiles(lex_t)
        modes["fusion_alone"] = percentiles(fuse_t)
        result["search"] = modes
        index.close()
        if args.model:
            from llm2vec_rag import LLM2Vec

            encoder = LLM2Vec.from_pretrained(args.model)
            encoder.encode_queries(claims[:2])
            times = []
            for claim in claims:
                start = time.perf_counter()
                encoder.encode_queries([claim], show_progress_bar=False)
                times.append(time.perf_counter() - start)
            result["query_embedding"] = {"model": args.model, **percentiles(times)}
    finally:
        shutil.rmtree(work, ignore_errors=True)
    Path(args.out).write_text(json.dumps(result, indent=1) + "\n", encoding="utf-8")
    print(json.dumps(result, indent=1))


if __name__ == "__main__":
    main()
