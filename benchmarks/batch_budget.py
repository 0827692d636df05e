"""Encoding time against the per-batch token budget on CPU, alternating budgets round by round.

Why: the default budget (batch_size x TOKENS_PER_BATCH_SLOT) decides whether a batch's
activations stay in cache; on a 2-core CPU smaller batches run faster, up to the point
where per-batch overhead wins. This picks the default with measurements.

    python benchmarks/batch_budget.py --queries 300 --docs 64 --rounds 3
"""
from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import RESULTS, SCIFACT_INSTRUCTION, machine_info, scifact_docs, scifact_queries, write_json  # noqa: E402


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", default="smollm2-135m")
    ap.add_argument("--queries", type=int, default=300)
    ap.add_argument("--docs", type=int, default=64)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--budgets", default="256,512,1024,2048")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--out", type=Path, default=RESULTS / "batch_budget.json")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    from llm2vec_rag import LLM2Vec

    queries = [[SCIFACT_INSTRUCTION, q] for q in scifact_queries(args.queries)]
    docs = scifact_docs(args.docs)
    enc = LLM2Vec.from_pretrained(args.model)
    enc.encode(queries[:32] + docs[:8], show_progress_bar=False)  # warm-up
    budgets = [int(b) for b in args.budgets.split(",")]
    times: dict[int, dict[str, list[float]]] = {b: {"queries": [], "docs": []} for b in budgets}
    for r in range(args.rounds):
        for b in budgets[r % len(budgets):] + budgets[: r % len(budgets)]:  # rotate the order
            for kind, texts in (("queries", queries), ("docs", docs)):
                t = time.perf_counter()
                enc.encode(texts, max_batch_tokens=b, show_progress_bar=False)
                times[b][kind].append(time.perf_counter() - t)
    rows = [{"budget": b, "queries_s_median": round(statistics.median(v["queries"]), 3),
             "docs_s_median": round(statistics.median(v["docs"]), 3),
             "queries_s": [round(x, 3) for x in v["queries"]], "docs_s": [round(x, 3) for x in v["docs"]]}
            for b, v in times.items()]
    write_json(args.out, {"command": " ".join(["python", "benchmarks/batch_budget.py", *sys.argv[1:]]),
                          "settings": {k: str(v) for k, v in vars(args).items()}, "machine": machine_info(),
                          "engine": enc.engine, "rows": rows})
    print("| tokens per batch | queries s (median) | docs s (median) |\n|---:|---:|---:|")
    for row in rows:
        print(f"| {row['budget']} | {row['queries_s_median']} | {row['docs_s_median']} |")


if __name__ == "__main__":
    main()
