"""SciFact (BEIR test split) through mteb 2.x beside ``llm2vec-rag eval retrieval``, same encoder, offline.

    source .venv/bin/activate
    python benchmarks/mteb_scifact.py [--model smollm2-135m] [--data ../shared/data/scifact]

Both read the folder with ``load_beir`` (title + text, the 300 judged queries) and give queries the
paper's SciFact instruction and documents none; mteb then encodes, ranks and scores on its own
(pytrec_eval). Writes benchmarks/reference/results/mteb_scifact.json.
"""
from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import DATA, RESULTS, log, machine_info, write_json  # noqa: E402


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--model", default="smollm2-135m")
    ap.add_argument("--data", type=Path, default=DATA / "scifact")
    ap.add_argument("--batch-size", type=int, default=32)
    ap.add_argument("--max-docs", type=int, default=None,
                    help="keep the relevant documents, then fill up to this many (a smaller, easier task: "
                         "for comparing the two pipelines, not a SciFact score)")
    args = ap.parse_args(argv)

    import mteb

    from llm2vec_rag import LLM2Vec
    from llm2vec_rag.evaluation.retrieval import load_beir, run_retrieval_eval
    from llm2vec_rag.integrations.mteb import LLM2VecMTEB, beir_retrieval_task

    encoder = LLM2Vec.from_pretrained(args.model)
    t0 = time.perf_counter()
    data = load_beir(args.data, max_docs=args.max_docs)
    ours = run_retrieval_eval(encoder, data, batch_size=args.batch_size, show_progress=False)
    ours_s = time.perf_counter() - t0
    log(f"eval retrieval: nDCG@10 {ours['ndcg@10']:.5f} ({ours_s:.0f}s)")
    t0 = time.perf_counter()
    result = mteb.evaluate(LLM2VecMTEB(encoder), beir_retrieval_task(args.data, max_docs=args.max_docs), cache=None,
                           show_progress_bar=False, encode_kwargs={"batch_size": args.batch_size})
    mteb_s = time.perf_counter() - t0
    scores = result.task_results[0].scores["test"][0]
    log(f"mteb: nDCG@10 {scores['ndcg_at_10']:.5f} ({mteb_s:.0f}s)")
    name = "mteb_scifact.json" if args.max_docs is None else f"mteb_scifact_max{args.max_docs}.json"
    write_json(RESULTS / name, {
        "model": args.model, "fingerprint": encoder.fingerprint(), "repr": repr(encoder), "data": str(args.data), "max_docs": args.max_docs,
        "documents": len(data.corpus_ids), "queries": len(data.qrels),
        "eval_retrieval": {k: ours[k] for k in ("ndcg@10", "mrr@10", "recall@10", "recall@100") if k in ours},
        "mteb": {k: scores[k] for k in ("ndcg_at_10", "mrr_at_10", "recall_at_10", "recall_at_100") if k in scores},
        "mteb_version": mteb.__version__, "seconds": {"eval_retrieval": round(ours_s, 1), "mteb": round(mteb_s, 1)},
        "machine": machine_info(), "command": "python benchmarks/mteb_scifact.py" + (f" --max-docs {args.max_docs}" if args.max_docs else ""),
    })
    return 0 if abs(ours["ndcg@10"] - scores["ndcg_at_10"]) <= 0.005 else 1


if __name__ == "__main__":
    sys.exit(main())
