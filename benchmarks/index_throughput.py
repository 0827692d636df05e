"""Indexing throughput (chunks/s) and peak RSS, on the SciFact corpus written out as one file per abstract.

    python benchmarks/index_throughput.py --files 5183 --model fake:          # pipeline only (no model)
    python benchmarks/index_throughput.py --files 300 --model smollm2-135m    # with the real encoder
    python benchmarks/index_throughput.py --files 20000 --model fake:         # 5,183 abstracts, repeated
    python benchmarks/index_throughput.py --files 100 --docs-per-file 100 --model fake:576  # memory: 10k chunks
    python benchmarks/index_throughput.py --files 1000 --docs-per-file 100 --model fake:576 # memory: 100k chunks

``fake:`` is the hashed bag-of-words encoder from tests/fakes.py: it measures walking, reading,
chunking, SQLite and FAISS without the model, so the figure is the pipeline's ceiling. Peak RSS is
this process's maximum resident set (ru_maxrss), model included. Prints one JSON line.
"""
from __future__ import annotations

import argparse
import json
import os
import resource
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests"))


def write_corpus(corpus: Path, out: Path, n_files: int, docs_per_file: int = 1) -> int:
    docs = [json.loads(line) for line in corpus.open(encoding="utf-8")]
    k = 0
    for i in range(n_files):
        sub = out / f"part{i // 1000:03d}"
        sub.mkdir(parents=True, exist_ok=True)
        parts = []
        for _ in range(docs_per_file):
            d = docs[k % len(docs)]
            suffix = f" (copy {k // len(docs)})" if k >= len(docs) else ""
            parts.append(f"# {d['title']}{suffix}\n\n{d['text']}\n")
            k += 1
        (sub / f"file-{i}.md").write_text("\n".join(parts), encoding="utf-8")
    return n_files


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", default=str(ROOT.parent / "shared" / "data" / "scifact" / "corpus.jsonl"))
    ap.add_argument("--files", type=int, default=2000)
    ap.add_argument("--model", default="fake:")
    ap.add_argument("--chunk-tokens", type=int, default=256)
    ap.add_argument("--batch-size", type=int, default=32)
    ap.add_argument("--docs-per-file", type=int, default=1,
                    help="abstracts per file (each under its own heading): many chunks from few files")
    args = ap.parse_args()

    from llm2vec_rag import Index
    from llm2vec_rag.index.model import FACTORY_ENV, load_encoder

    os.environ.setdefault(FACTORY_ENV, "fakes:make_fake_encoder")
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp) / "docs"
        write_corpus(Path(args.data), folder, args.files, args.docs_per_file)
        t0 = time.perf_counter()
        encoder = load_encoder(args.model)
        load_s = time.perf_counter() - t0
        rss_after_load = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
        t0 = time.perf_counter()
        with Index.build(folder, path=Path(tmp) / "ix", encoder=encoder, chunk_tokens=args.chunk_tokens,
                         batch_size=args.batch_size, progress=False, log=lambda m: None) as index:
            report = index.last_report
            faiss_mb = index.meta.count() * (index.dim * 4 + 8) / 2**20  # flat: vectors + ids
            rss_now = _current_rss_mb()  # what stays resident (the peak includes FAISS's growth transient)
        seconds = time.perf_counter() - t0
        rss_after_build = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
        t0 = time.perf_counter()
        with Index.build(folder, path=Path(tmp) / "ix", encoder=encoder, progress=False,
                         chunk_tokens=args.chunk_tokens, log=lambda m: None) as index:
            unchanged = index.last_report.unchanged
        rerun_s = time.perf_counter() - t0
    print(json.dumps({
        "model": args.model, "files": report.added, "chunks": report.chunks_added,
        "index_seconds": round(seconds, 1), "chunks_per_s": round(report.chunks_added / seconds, 1),
        "files_per_s": round(report.added / seconds, 1), "model_load_s": round(load_s, 1),
        "peak_rss_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024),
        "peak_rss_build_mb": round(rss_after_build), "faiss_index_mb": round(faiss_mb, 1),
        "peak_rss_build_minus_index_mb": round(rss_after_build - faiss_mb),
        "rss_after_build_mb": round(rss_now), "rss_after_build_minus_index_mb": round(rss_now - faiss_mb),
        "docs_per_file": args.docs_per_file,
        "rss_after_model_load_mb": round(rss_after_load), "unchanged_rerun_s": round(rerun_s, 2),
        "unchanged_files": unchanged, "torch_threads": _threads(), "load_avg_1m": os.getloadavg()[0],
    }))


def _current_rss_mb() -> float:
    with open("/proc/self/status", encoding="ascii") as fh:
        for line in fh:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    return float("nan")


def _threads() -> int | None:
    try:
        import torch

        return torch.get_num_threads()
    except ImportError:
        return None


if __name__ == "__main__":
    main()
