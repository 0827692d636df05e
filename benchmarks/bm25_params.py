"""Tune the lexical side (BM25) on SciFact **train** queries only (never test); no model is loaded.

Two families of settings, both over the index's own FTS5 table as ``eval retrieval`` builds it
(:func:`llm2vec_rag.evaluation.retrieval.lexical_corpus`: text column = title + abstract, heading
column = title, file name column empty):

* **built-in**: FTS5's ``bm25()`` (k1 = 1.2, b = 0.75 fixed), column weights varied — run
  through the index's own :func:`llm2vec_rag.index.lexical.search`;
* **ours**: BM25 computed here from FTS5's own term statistics — postings and document
  frequencies from an ``fts5vocab`` ``instance`` table, document lengths as per-row token
  counts, the same IDF and column-weighted term frequency as ``bm25()`` — with k1 and b free.
  At k1 = 1.2, b = 0.75 it must reproduce ``bm25()`` (checked and printed).

Per-query nDCG@10 also gives a paired bootstrap 95% interval for each setting against the
default and a repeated two-fold cross-validation (choose on one half of the train queries,
measure on the other) for each family: what a setting chosen on train is worth on unseen
queries. Writes ``benchmarks/results/bm25_params-<dataset>-<split>.json``.

    python benchmarks/bm25_params.py
"""
from __future__ import annotations

import argparse
import json
import math
import os
import sys
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
DATA = Path(os.environ.get("LLM2VEC_RAG_DATA", REPO.parent / "shared" / "data")).resolve()

HEADING_WEIGHTS = (0.0, 0.5, 1.0, 1.5, 2.0, 2.5, 3.0, 4.0, 6.0)
TEXT_WEIGHTS = (0.5, 0.75, 1.5, 2.0)  # with heading 1: scaling tf before saturation acts like another k1
K1S = (0.6, 0.9, 1.2, 1.5, 2.0)
BS = (0.3, 0.5, 0.75, 0.9, 1.0)


class OwnBM25:
    """BM25 from an FTS5 table's statistics: ``fts5vocab`` postings, per-row token counts as lengths."""

    def __init__(self, conn, table: str, n_rows: int) -> None:
        from llm2vec_rag.index import lexical

        self.lexical = lexical
        self.n = n_rows
        conn.execute(f"CREATE VIRTUAL TABLE temp.vocab_instance USING fts5vocab(main, {table}, instance)")
        columns = {c: i for i, c in enumerate(lexical.COLUMNS)}
        self.lengths = np.zeros((n_rows, len(columns)))
        postings: dict[str, dict[int, np.ndarray]] = {}
        for term, doc, col, _ in conn.execute("SELECT term, doc, col, offset FROM temp.vocab_instance"):
            row = postings.setdefault(term, {}).setdefault(doc, np.zeros(len(columns)))
            row[columns[col]] += 1
            self.lengths[doc, columns[col]] += 1
        # term -> (row ids, per-column term frequencies)
        self.postings = {t: (np.fromiter(p, dtype=np.int64), np.stack(list(p.values()))) for t, p in postings.items()}
        # the query is stemmed the way FTS5 stems it: by a scratch FTS5 table with the same tokenizer
        conn.execute(f"CREATE VIRTUAL TABLE temp.scratch USING fts5(x, tokenize='{lexical.TOKENIZE}')")
        conn.execute("CREATE VIRTUAL TABLE temp.scratch_vocab USING fts5vocab(temp, scratch, row)")
        self.conn = conn

    def terms(self, query: str) -> list[str]:
        self.conn.execute("DELETE FROM temp.scratch")
        self.conn.executemany("INSERT INTO temp.scratch(x) VALUES (?)", [(t,) for t in self.lexical.query_terms(query)])
        return [t for (t,) in self.conn.execute("SELECT term FROM temp.scratch_vocab")]

    def search(self, terms: list[str], n: int, k1: float, b: float, weights) -> list[tuple[int, float]]:
        w = np.asarray(weights, dtype=np.float64)
        length = self.lengths.sum(axis=1)  # as bm25(): the row's tokens over all columns
        norm = k1 * (1 - b + b * length / length.mean())
        scores = np.zeros(self.n)
        hit = np.zeros(self.n, dtype=bool)
        for term in terms:
            if term not in self.postings:
                continue
            docs, tf = self.postings[term]
            idf = math.log((self.n - len(docs) + 0.5) / (len(docs) + 0.5))
            idf = idf if idf > 0 else 1e-6  # bm25()'s floor
            f = tf @ w
            scores[docs] += idf * f * (k1 + 1) / (f + norm[docs])
            hit[docs] = True
        ids = np.flatnonzero(hit)
        order = np.lexsort((ids, -scores[ids]))[:n]
        return [(int(ids[i]), float(scores[ids[i]])) for i in order]


def per_query_ndcg(rankings: dict[str, list[int]], data) -> np.ndarray:
    from llm2vec_rag.evaluation.retrieval import ndcg_at_k

    return np.array([ndcg_at_k([data.corpus_ids[i] for i in rankings[q]], data.qrels[q], 10) for q in data.qrels])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", default=str(DATA / "scifact"))
    parser.add_argument("--split", default="train", help="qrels split to tune on (train; never test)")
    parser.add_argument("--folds", type=int, default=50, help="repetitions of the two-fold cross-validation")
    args = parser.parse_args()
    if args.split == "test":
        sys.exit("tune on train queries, never on test")

    from llm2vec_rag.evaluation.retrieval import evaluate_rankings, lexical_corpus, load_beir
    from llm2vec_rag.index import lexical

    data = load_beir(args.data, split=args.split)
    conn = lexical_corpus(data)
    qids = list(data.qrels)
    rows: list[dict] = []
    per_query: dict[str, np.ndarray] = {}

    def record(name: str, family: str, rankings: dict[str, list[tuple[int, float]]], **setting) -> None:
        ids = {q: [i for i, _ in rankings[q]] for q in qids}
        metrics = evaluate_rankings({q: [data.corpus_ids[i] for i in ids[q]] for q in qids}, data.qrels)
        per_query[name] = per_query_ndcg(ids, data)
        rows.append({"name": name, "family": family, **setting, **{k: round(v, 5) for k, v in metrics.items()}})
        print(f"{name:<44} nDCG@10 {metrics['ndcg@10']:.4f}  recall@100 {metrics['recall@100']:.4f}", flush=True)

    start = time.perf_counter()
    weight_sets = [(1.0, h, 1.0) for h in HEADING_WEIGHTS] + [(t, 1.0, 1.0) for t in TEXT_WEIGHTS]
    for w in weight_sets:
        record(f"built-in bm25(), weights {w[0]:g}/{w[1]:g}/{w[2]:g}", "built-in",
               {q: lexical.search(conn, data.queries[q], 100, weights=w) for q in qids}, weights=list(w))
    builtin_s = time.perf_counter() - start

    own = OwnBM25(conn, lexical.TABLE, len(data.corpus_ids))
    terms = {q: own.terms(data.queries[q]) for q in qids}
    best_heading = max((r for r in rows if r["family"] == "built-in"), key=lambda r: r["ndcg@10"])["weights"]
    for w in sorted({(1.0, 1.0, 1.0), tuple(best_heading)}):
        for k1 in K1S:
            for b in BS:
                record(f"ours, k1 {k1:g}, b {b:g}, weights {w[0]:g}/{w[1]:g}/{w[2]:g}", "ours",
                       {q: own.search(terms[q], 100, k1, b, w) for q in qids}, k1=k1, b=b, weights=list(w))
    default = "built-in bm25(), weights 1/1/1"
    check = per_query["ours, k1 1.2, b 0.75, weights 1/1/1"] - per_query[default]
    print(f"ours at k1 1.2, b 0.75 vs bm25(): mean nDCG@10 difference {check.mean():+.5f} "
          f"(queries that differ: {int((np.abs(check) > 1e-9).sum())}; float ties)")

    rng = np.random.default_rng(0)
    for r in rows:  # paired bootstrap against the default
        diff = per_query[r["name"]] - per_query[default]
        means = [diff[rng.integers(0, len(diff), len(diff))].mean() for _ in range(2000)]
        r["vs_default"] = round(float(diff.mean()), 5)
        r["vs_default_95"] = [round(float(np.percentile(means, 2.5)), 5), round(float(np.percentile(means, 97.5)), 5)]
    cv = {}
    families = {"built-in weights": [r["name"] for r in rows if r["family"] == "built-in"],
                "built-in weights + ours (k1, b)": [r["name"] for r in rows]}
    for label, names in families.items():
        gains, chosen = [], {}
        for _ in range(args.folds):
            perm = rng.permutation(len(qids))
            a, b_half = perm[: len(qids) // 2], perm[len(qids) // 2 :]
            name = max(names, key=lambda n: per_query[n][a].mean())
            chosen[name] = chosen.get(name, 0) + 1
            gains.append(per_query[name][b_half].mean() - per_query[default][b_half].mean())
        cv[label] = {"held_out_gain": round(float(np.mean(gains)), 5), "sd": round(float(np.std(gains)), 5),
                     "chosen": dict(sorted(chosen.items(), key=lambda x: -x[1])[:5])}
        print(f"2-fold CV, {label}: held-out nDCG@10 gain over the default "
              f"{np.mean(gains):+.4f} ± {np.std(gains):.4f}")
    best = max(rows, key=lambda r: r["ndcg@10"])
    print(f"best on {data.name} {args.split}: {best['name']} nDCG@10 {best['ndcg@10']:.4f}")
    out = REPO / "benchmarks" / "results" / f"bm25_params-{data.name}-{args.split}.json"
    out.write_text(json.dumps({"dataset": data.name, "split": args.split, "queries": len(qids),
                               "documents": len(data.corpus_ids),
                               "command": "python benchmarks/bm25_params.py " + " ".join(sys.argv[1:]),
                               "own_bm25_reproduces_builtin": {"mean_diff": round(float(check.mean()), 6),
                                                               "queries_differing": int((np.abs(check) > 1e-9).sum())},
                               "builtin_search_s": round(builtin_s, 1), "cross_validation": cv,
                               "best": best, "rows": rows}, indent=1) + "\n", encoding="utf-8")
    print(f"wrote {out.relative_to(REPO)}")


if __name__ == "__main__":
    main()
