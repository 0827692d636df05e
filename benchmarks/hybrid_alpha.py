"""Choose hybrid search's default weight on SciFact **train** queries (never test).

Computes each side's top 100 once (dense with the given model, lexical BM25 from the
index's own FTS5 table), then sweeps ``alpha`` for convex and RRF fusion with the
index's own fusion code, and writes the sweep to
``benchmarks/results/hybrid_alpha-<dataset>-<split>-<model>.json``.

    python benchmarks/hybrid_alpha.py                       # default model, SciFact train
    python benchmarks/hybrid_alpha.py --model <MiniLM dir>  # the same sweep for another encoder
"""
from __future__ import annotations

import argparse
import json
import os
import re
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
DATA = Path(os.environ.get("LLM2VEC_RAG_DATA", REPO.parent / "shared" / "data")).resolve()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", default=str(DATA / "scifact"))
    parser.add_argument("--split", default="train", help="qrels split to tune on (train; never test)")
    parser.add_argument("--model", default="smollm2-135m")
    parser.add_argument("--step", type=float, default=0.05)
    args = parser.parse_args()
    if args.split == "test":
        sys.exit("tune on train queries, never on test")

    from llm2vec_rag import LLM2Vec
    from llm2vec_rag.evaluation.retrieval import load_beir, retrieval_candidates, score_candidates
    from llm2vec_rag.index.hybrid import SearchSettings

    data = load_beir(args.data, split=args.split)
    encoder = LLM2Vec.from_pretrained(args.model)
    cands = retrieval_candidates(encoder, data, ("dense", "lexical"), 100, log=lambda m: print(m, file=sys.stderr))
    steps = round(1 / args.step)
    rows = []
    for mode in ("dense", "lexical"):
        rows.append({"mode": mode, **score_candidates(cands, data, SearchSettings.of(mode))})
    for fusion in ("convex", "rrf"):
        for n in range(steps + 1):
            alpha = round(n * args.step, 4)
            metrics = score_candidates(cands, data, SearchSettings.of("hybrid", alpha, fusion))
            rows.append({"mode": "hybrid", "fusion": fusion, "alpha": alpha, **metrics})
    best = max((r for r in rows if r["mode"] == "hybrid"), key=lambda r: r["ndcg@10"])
    for r in rows:
        label = r["mode"] if r["mode"] != "hybrid" else f"{r['fusion']} alpha={r['alpha']:.2f}"
        print(f"{label:<22} nDCG@10 {r['ndcg@10']:.4f}  recall@100 {r['recall@100']:.4f}")
    print(f"best on {data.name} {args.split}: {best['fusion']} alpha={best['alpha']} nDCG@10 {best['ndcg@10']:.4f}")
    label = "-".join(Path(args.model).parts[-2:]) if os.path.exists(args.model) else args.model
    name = re.sub(r"[^A-Za-z0-9.-]+", "-", label)
    out = REPO / "benchmarks" / "results" / f"hybrid_alpha-{data.name}-{args.split}-{name}.json"
    out.write_text(json.dumps({"dataset": data.name, "split": args.split, "model": args.model,
                               "queries": len(data.qrels), "documents": len(data.corpus_ids),
                               "command": "python benchmarks/hybrid_alpha.py " + " ".join(sys.argv[1:]),
                               "best": best, "rows": rows}, indent=1) + "\n", encoding="utf-8")
    print(f"wrote {out.relative_to(REPO)}")


if __name__ == "__main__":
    main()
