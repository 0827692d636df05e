"""Encoding speed, ours vs the reference llm2vec 0.2.3, interleaved slice by slice.

Why a second throughput benchmark: on this shared 2-core machine the speed of
the whole host drifts by 2-3x within minutes, so contenders measured one after
the other (``encode_throughput.py``) can swap places between repeats. Here every
contender is a persistent worker that loaded its model once; the driver hands
each the same slice of texts in turn (order rotated every slice), so drift hits
all contenders alike, and the ratio of each slice's times is taken pairwise.
Reported: the ratio of summed times, the median of per-slice ratios, and the
cosine between our vectors and the reference's for every text.

    python benchmarks/paired_throughput.py --docs 200 --slices 8 --rounds 2
    python benchmarks/paired_throughput.py --docs 96 --slices 4 --rounds 2 --fp32   # adds both fp32 sides
"""
from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import (  # noqa: E402
    OUT, REF_DIR, REF_PYTHON, RESULTS, SCIFACT_INSTRUCTION, ensure_reference_venv, export_reference_model, log,
    machine_info, row_cosines, scifact_docs, scifact_queries, write_json,
)


# ------------------------------------------------------------------ workers (one process each)
def _serve(encode) -> int:
    """Answer ``{"items": [...]}`` lines on stdin with ``{"seconds": s, "vectors": path}``."""
    print(json.dumps({"ready": True}), flush=True)
    for line in sys.stdin:
        job = json.loads(line)
        t0 = time.perf_counter()
        vecs = np.asarray(encode(job["items"]), dtype=np.float32)
        seconds = time.perf_counter() - t0
        np.save(job["out"], vecs)
        print(json.dumps({"seconds": seconds}), flush=True)
    return 0


def ours_worker(spec: dict) -> int:
    import torch

    torch.set_num_threads(int(spec["threads"]))
    from llm2vec_rag import LLM2Vec

    enc = LLM2Vec.from_pretrained("smollm2-135m-base", dtype=spec["dtype"], engine=spec.get("engine", "auto"),
                                  compile=bool(spec.get("compile")), max_length=int(spec["max_length"]))
    warm = json.load(open(spec["warmup"], encoding="utf-8"))
    enc.encode(warm, batch_size=int(spec["batch_size"]), show_progress_bar=False)
    return _serve(lambda items: enc.encode(items, batch_size=int(spec["batch_size"]), show_progress_bar=False))


def reference_worker(spec: dict) -> int:
    import torch

    torch.set_num_threads(int(spec["threads"]))
    sys.path.insert(0, str(REF_DIR))
    from llm2vec import LLM2Vec
    from ref_encode import as_pairs, load_base

    model, tokenizer = load_base(spec["model_dir"], True, spec["dtype"])
    enc = LLM2Vec(model=model, tokenizer=tokenizer, pooling_mode="mean", max_length=int(spec["max_length"]),
                  doc_max_length=10**9)
    bs = int(spec["batch_size"])
    enc.encode(as_pairs(json.load(open(spec["warmup"], encoding="utf-8"))), batch_size=bs, show_progress_bar=False)
    return _serve(lambda items: enc.encode(as_pairs(items), batch_size=bs, show_progress_bar=False,
                                           convert_to_numpy=True))


# ------------------------------------------------------------------ driver
class Worker:
    def __init__(self, name: str, spec: dict, python: Path, threads: int) -> None:
        self.name = name
        env = dict(os.environ, OMP_NUM_THREADS=str(threads), TOKENIZERS_PARALLELISM="false",
                   HF_HUB_OFFLINE="1", TRANSFORMERS_OFFLINE="1")
        if spec["kind"] == "reference":
            env["PYTHONPATH"] = ""
        self.proc = subprocess.Popen([str(python), __file__, "--worker", json.dumps(spec)], stdin=subprocess.PIPE,
                                     stdout=subprocess.PIPE, text=True, env=env)
        ready = self.proc.stdout.readline()
        if not ready:
            raise RuntimeError(f"worker {name} died while loading")

    def encode(self, items: list, out: Path) -> float:
        self.proc.stdin.write(json.dumps({"items": items, "out": str(out)}) + "\n")
        self.proc.stdin.flush()
        return float(json.loads(self.proc.stdout.readline())["seconds"])

    def close(self) -> None:
        self.proc.stdin.close()
        self.proc.wait(timeout=60)


def contenders(args) -> dict[str, dict]:
    c = {"ours-bf16": {"kind": "ours", "dtype": "bfloat16"},
         "ours-bf16@transformers": {"kind": "ours", "dtype": "bfloat16", "engine": "transformers"},
         "reference-bf16": {"kind": "reference", "dtype": "bfloat16"}}
    if args.fp32:
        c["ours-fp32"] = {"kind": "ours", "dtype": "float32"}
        c["reference-fp32"] = {"kind": "reference", "dtype": "float32"}
    return c


PAIRS = [("ours-bf16", "reference-bf16"), ("ours-bf16@transformers", "reference-bf16"),
         ("ours-bf16", "ours-bf16@transformers"), ("ours-fp32", "reference-fp32"), ("ours-bf16", "reference-fp32")]


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--docs", type=int, default=200)
    ap.add_argument("--queries", type=int, default=0, help="also encode this many SciFact queries (with instruction)")
    ap.add_argument("--slices", type=int, default=8)
    ap.add_argument("--rounds", type=int, default=2)
    ap.add_argument("--fp32", action="store_true", help="add ours-fp32 and reference-fp32")
    ap.add_argument("--batch-size", type=int, default=32)
    ap.add_argument("--max-length", type=int, default=512)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--out", type=Path, default=None)
    ap.add_argument("--worker", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.worker:
        spec = json.loads(args.worker)
        return ours_worker(spec) if spec["kind"] == "ours" else reference_worker(spec)

    ref_python = ensure_reference_venv()
    export = export_reference_model(model="smollm2-135m-base")
    items: list = scifact_docs(args.docs) + [[SCIFACT_INSTRUCTION, q] for q in scifact_queries(args.queries)]
    work = OUT / "paired"
    work.mkdir(parents=True, exist_ok=True)
    warm = work / "warmup.json"
    warm.write_text(json.dumps(items[:8]), encoding="utf-8")
    bounds = np.linspace(0, len(items), args.slices + 1).astype(int)
    slices = [items[a:b] for a, b in zip(bounds[:-1], bounds[1:])]
    names = list(contenders(args))
    workers = {}
    for name, spec in contenders(args).items():
        spec = {**spec, "threads": args.threads, "batch_size": args.batch_size, "max_length": args.max_length,
                "warmup": str(warm), "model_dir": str(export)}
        python = ref_python if spec["kind"] == "reference" else Path(sys.executable)
        log(f"loading {name}")
        workers[name] = Worker(name, spec, python, args.threads)
    times = {n: [[0.0] * args.slices for _ in range(args.rounds)] for n in names}
    try:
        for r in range(args.rounds):
            for s, chunk in enumerate(slices):
                k = (r * args.slices + s) % len(names)
                for name in names[k:] + names[:k]:  # rotate who goes first
                    times[name][r][s] = workers[name].encode(chunk, work / f"{name}-{s}.npy")
            log(f"round {r + 1}: " + ", ".join(f"{n} {sum(times[n][r]):.1f}s" for n in names))
    finally:
        for w in workers.values():
            w.close()
    vectors = {n: np.concatenate([np.load(work / f"{n}-{s}.npy") for s in range(args.slices)]) for n in names}
    n_docs = args.docs
    summary = {"contenders": {}, "pairs": {}}
    for n in names:
        total = sum(sum(t) for t in times[n]) / args.rounds
        summary["contenders"][n] = {"seconds_per_round": total, "texts_per_s": len(items) / total,
                                    "round_seconds": [sum(t) for t in times[n]]}
    for a, b in PAIRS:
        if a not in times or b not in times:
            continue
        per_slice = [times[b][r][s] / times[a][r][s] for r in range(args.rounds) for s in range(args.slices)]
        cos = row_cosines(vectors[a], vectors[b])
        summary["pairs"][f"{a} vs {b}"] = {
            "speed_ratio_total": sum(map(sum, times[b])) / sum(map(sum, times[a])),
            "speed_ratio_median_slice": statistics.median(per_slice),
            "speed_ratio_slice_range": [min(per_slice), max(per_slice)],
            "cosine_docs": {"min": float(cos[:n_docs].min()), "mean": float(cos[:n_docs].mean())},
            **({"cosine_queries": {"min": float(cos[n_docs:].min()), "mean": float(cos[n_docs:].mean())}}
               if len(items) > n_docs else {}),
        }
    result = {"command": "python benchmarks/paired_throughput.py " + " ".join(sys.argv[1:]),
              "settings": {k: v for k, v in vars(args).items() if k not in ("worker", "out")},
              "machine": machine_info(), "load_average_end": os.getloadavg(), "times": times, "summary": summary}
    out = args.out or RESULTS / f"paired_throughput-{args.docs}d-{args.queries}q.json"
    write_json(out, result)
    for n, row in summary["contenders"].items():
        print(f"{n:28s} {row['texts_per_s']:7.2f} texts/s  rounds {[round(x, 1) for x in row['round_seconds']]}")
    for key, p in summary["pairs"].items():
        q = f"; queries cos min {p['cosine_queries']['min']:.5f}" if "cosine_queries" in p else ""
        print(f"{key:48s} total {p['speed_ratio_total']:.2f}x, median slice {p['speed_ratio_median_slice']:.2f}x "
              f"(range {p['speed_ratio_slice_range'][0]:.2f}-{p['speed_ratio_slice_range'][1]:.2f}); "
              f"docs cos min {p['cosine_docs']['min']:.5f} mean {p['cosine_docs']['mean']:.6f}{q}")
    print(f"written {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
