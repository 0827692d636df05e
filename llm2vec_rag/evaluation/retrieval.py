"""Retrieval evaluation on the BEIR layout: nDCG@10, MRR@10, recall@10, recall@100.

BEIR layout: ``corpus.jsonl`` (``_id``, ``title``, ``text``), ``queries.jsonl``
(``_id``, ``text``) and ``qrels/<split>.tsv`` (``query-id``, ``corpus-id``,
``score``, header line optional). Documents are encoded as ``title + " " + text``
with the encoder's document instruction, queries with a per-dataset instruction.

Document embeddings are cached on disk (``<cache>/eval-embeddings/<key>/``),
keyed by the model fingerprint, dtype, max length and a hash of the corpus
file, and written in shards as they are computed, so a long run that is
stopped resumes where it left off and a rerun costs only the queries.
The metric definitions follow ``trec_eval``/BEIR (linear gain for nDCG).
"""
from __future__ import annotations

import hashlib
import json
import math
import os
import sqlite3
import sys
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from ..jsonl import iter_jsonl
from ..errors import LLM2VecError
from ..index import lexical
from ..index.hybrid import SearchSettings, fuse, single
from ..paths import cache_dir

# Instructions from the LLM2Vec paper (BehnamGhader et al. 2024, Table 10), by BEIR dataset name.
DATASET_INSTRUCTIONS: dict[str, str] = {
    "scifact": "Given a scientific claim, retrieve documents that support or refute the claim:",
    "nfcorpus": "Given a question, retrieve relevant documents that best answer the question:",
    "arguana": "Given a claim, find documents that refute the claim:",
    "fiqa": "Given a financial question, retrieve user replies that best answer the question:",
    "scidocs": "Given a scientific paper title, retrieve paper abstracts that are cited by the given paper:",
    "trec-covid": "Given a query on COVID-19, retrieve documents that answer the query:",
    "nq": "Given a question, retrieve Wikipedia passages that answer the question:",
    "quora": "Given a question, retrieve questions that are semantically equivalent to the given question:",
    "hotpotqa": "Given a multi-hop question, retrieve documents that can help answer the question:",
    "msmarco": "Given a web search query, retrieve relevant passages that answer the query:",
}

SHARD_SIZE = 256  # documents per checkpoint file
CACHE_FORMAT = 1


@dataclass
class BeirData:
    """A BEIR dataset held in memory; ``qrels`` keeps only queries with a relevant document."""

    name: str
    corpus_ids: list[str]
    corpus_texts: list[str]  # title + " " + text
    queries: dict[str, str]
    qrels: dict[str, dict[str, int]]
    corpus_hash: str
    split: str = "test"
    extra: dict[str, Any] = field(default_factory=dict)
    corpus_titles: list[str] = field(default_factory=list)  # the lexical side's heading column


def _read_jsonl(path: Path) -> list[dict[str, Any]]:
    if not path.is_file():
        raise LLM2VecError(f"{path} not found (expected the BEIR layout: corpus.jsonl, queries.jsonl, qrels/)")
    rows = []
    for number, row in iter_jsonl(path):
        if "_id" not in row:
            raise LLM2VecError(f"{path}:{number}: expected an object with an _id field")
        rows.append(row)
    return rows


def _read_qrels(path: Path) -> dict[str, dict[str, int]]:
    if not path.is_file():
        available = sorted(p.stem for p in path.parent.glob("*.tsv")) if path.parent.is_dir() else []
        hint = f"; available splits: {', '.join(available)}" if available else ""
        raise LLM2VecError(f"{path} not found{hint}")
    qrels: dict[str, dict[str, int]] = {}
    with open(path, encoding="utf-8", errors="replace") as fh:
        for number, line in enumerate(fh, 1):
            parts = line.rstrip("\n").split("\t")
            if not line.strip():
                continue
            if len(parts) < 3:
                raise LLM2VecError(f"{path}:{number}: expected query-id, corpus-id, score separated by tabs")
            try:
                score = int(float(parts[2]))
            except ValueError:
                if number == 1:  # header line
                    continue
                raise LLM2VecError(f"{path}:{number}: score {parts[2]!r} is not a number") from None
            if score > 0:
                qrels.setdefault(parts[0], {})[parts[1]] = score
    return qrels


def _file_hash(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()[:16]


def load_beir(data_dir: str | os.PathLike[str], split: str = "test", max_docs: int | None = None) -> BeirData:
    """Read a BEIR folder; ``max_docs`` keeps the relevant documents first, then fills up in file order.

    With ``max_docs`` the task is easier than the full corpus (fewer distractors):
    figures from such runs are for smoke tests, not for comparison.
    """
    root = Path(data_dir).expanduser()
    if not root.is_dir():
        raise LLM2VecError(f"data directory {root} does not exist")
    corpus_rows = _read_jsonl(root / "corpus.jsonl")
    query_rows = _read_jsonl(root / "queries.jsonl")
    qrels = _read_qrels(root / "qrels" / f"{split}.tsv")
    queries = {str(r["_id"]): str(r.get("text", "")) for r in query_rows}
    qrels = {q: rel for q, rel in qrels.items() if q in queries}
    if not qrels:
        raise LLM2VecError(f"no query in qrels/{split}.tsv has a relevant document and a text in queries.jsonl")
    docs = {str(r["_id"]): f"{r.get('title') or ''} {r.get('text') or ''}".strip() for r in corpus_rows}
    titles = {str(r["_id"]): str(r.get("title") or "") for r in corpus_rows}
    ids = list(docs)
    if max_docs is not None:
        if max_docs < 1:
            raise LLM2VecError(f"--max-docs must be at least 1, got {max_docs}")
        relevant = {d for rel in qrels.values() for d in rel if d in docs}
        keep = [d for d in ids if d in relevant][:max_docs]
        keep_set = set(keep)
        keep += [d for d in ids if d not in keep_set][: max_docs - len(keep)]
        keep_set = set(keep)
        ids = [d for d in ids if d in keep_set]
    corpus_hash = _file_hash(root / "corpus.jsonl")
    if max_docs is not None:
        corpus_hash = hashlib.sha256(f"{corpus_hash}:{max_docs}".encode()).hexdigest()[:16]
    return BeirData(
        name=root.name.lower(),
        corpus_ids=ids,
        corpus_texts=[docs[d] for d in ids],
        queries={q: queries[q] for q in qrels},
        qrels=qrels,
        corpus_hash=corpus_hash,
        split=split,
        corpus_titles=[titles[d] for d in ids],
    )


def sample_queries(data: BeirData, queries: int, max_docs: int | None = None, seed: int = 0) -> BeirData:
    """A fixed subset for cheap dev figures: ``queries`` judged queries drawn with ``seed``, their relevant
    documents, then distractors in corpus order up to ``max_docs`` documents (default: the relevant + 500).
    Easier than the full corpus (fewer distractors): compare such figures only with each other."""
    if queries < 1:
        raise LLM2VecError(f"queries must be at least 1, got {queries}")
    judged = sorted(data.qrels)
    keep = sorted(np.random.default_rng(seed).permutation(len(judged))[: min(queries, len(judged))].tolist())
    qids = [judged[i] for i in keep]
    qrels = {q: data.qrels[q] for q in qids}
    position = {d: i for i, d in enumerate(data.corpus_ids)}
    relevant = [d for d in dict.fromkeys(d for q in qids for d in qrels[q]) if d in position]
    limit = max(max_docs or len(relevant) + 500, len(relevant))
    chosen = set(relevant)
    for d in data.corpus_ids:
        if len(chosen) >= limit:
            break
        chosen.add(d)
    ids = [d for d in data.corpus_ids if d in chosen]
    digest = hashlib.sha256(f"{data.corpus_hash}:q{queries}:d{limit}:s{seed}".encode()).hexdigest()[:16]
    return BeirData(name=data.name, corpus_ids=ids, corpus_texts=[data.corpus_texts[position[d]] for d in ids],
                    queries={q: data.queries[q] for q in qids}, qrels=qrels, corpus_hash=digest, split=data.split,
                    extra={**data.extra, "sampled_queries": len(qids), "sample_seed": seed})


# --------------------------------------------------------------------------- metrics
def ndcg_at_k(ranked: Sequence[str], relevant: Mapping[str, int], k: int = 10) -> float:
    """nDCG@k with linear gain (``rel / log2(rank + 1)``), as trec_eval and BEIR compute it."""
    dcg = sum(relevant.get(doc, 0) / math.log2(i + 2) for i, doc in enumerate(ranked[:k]))
    ideal = sorted((g for g in relevant.values() if g > 0), reverse=True)[:k]
    idcg = sum(g / math.log2(i + 2) for i, g in enumerate(ideal))
    return dcg / idcg if idcg > 0 else 0.0


def mrr_at_k(ranked: Sequence[str], relevant: Mapping[str, int], k: int = 10) -> float:
    """Reciprocal rank of the first relevant document in the top k (0 when none)."""
    for i, doc in enumerate(ranked[:k]):
        if relevant.get(doc, 0) > 0:
            return 1.0 / (i + 1)
    return 0.0


def recall_at_k(ranked: Sequence[str], relevant: Mapping[str, int], k: int = 10) -> float:
    """Share of the relevant documents found in the top k."""
    wanted = {d for d, g in relevant.items() if g > 0}
    if not wanted:
        return 0.0
    return len(wanted.intersection(ranked[:k])) / len(wanted)


def evaluate_rankings(rankings: Mapping[str, Sequence[str]], qrels: Mapping[str, Mapping[str, int]]) -> dict[str, float]:
    """Mean nDCG@10, MRR@10, recall@10 and recall@100 over the queries in ``qrels``."""
    if not qrels:
        raise LLM2VecError("no judged queries to evaluate")
    sums = {"ndcg@10": 0.0, "mrr@10": 0.0, "recall@10": 0.0, "recall@100": 0.0}
    for qid, relevant in qrels.items():
        ranked = list(rankings.get(qid, []))
        sums["ndcg@10"] += ndcg_at_k(ranked, relevant, 10)
        sums["mrr@10"] += mrr_at_k(ranked, relevant, 10)
        sums["recall@10"] += recall_at_k(ranked, relevant, 10)
        sums["recall@100"] += recall_at_k(ranked, relevant, 100)
    return {name: value / len(qrels) for name, value in sums.items()}


# --------------------------------------------------------------------------- encoding with a cache
def _cache_key(encoder: Any, data: BeirData) -> str:
    dtype = ""
    model = getattr(encoder, "model", None)
    if model is not None and hasattr(model, "parameters"):
        try:
            dtype = str(next(model.parameters()).dtype)
        except StopIteration:
            pass
    parts = [
        f"v{CACHE_FORMAT}", encoder.fingerprint(), dtype, str(getattr(encoder, "max_length", "")),
        str(getattr(encoder, "document_instruction", "")), data.corpus_hash, str(len(data.corpus_ids)),
    ]
    return hashlib.sha256("|".join(parts).encode()).hexdigest()[:24]


def _save_npy(path: Path, array: np.ndarray) -> None:
    tmp = path.with_name(path.name + ".tmp.npy")
    np.save(tmp, array)
    os.replace(tmp, path)


def encode_corpus_cached(
    encoder: Any,
    data: BeirData,
    batch_size: int = 32,
    show_progress: bool = True,
    use_cache: bool = True,
) -> tuple[np.ndarray, bool]:
    """L2-normalised document vectors in corpus order, and whether they came whole from the cache.

    Longest documents first (less padding), in shards of ``SHARD_SIZE`` saved as
    ``.npy`` as soon as they are done: a stopped run resumes at the next shard.
    """
    key = _cache_key(encoder, data)
    folder = cache_dir() / "eval-embeddings" / key
    final = folder / "embeddings.npy"
    if use_cache and final.is_file():
        vectors = np.load(final, allow_pickle=False)
        if vectors.shape[0] == len(data.corpus_ids):
            return vectors, True
    order = sorted(range(len(data.corpus_texts)), key=lambda i: (-len(data.corpus_texts[i]), i))
    shards = [order[s : s + SHARD_SIZE] for s in range(0, len(order), SHARD_SIZE)]
    if use_cache:
        folder.mkdir(parents=True, exist_ok=True)
        (folder / "meta.json").write_text(json.dumps({
            "model": getattr(encoder, "name", ""), "fingerprint": encoder.fingerprint(),
            "dataset": data.name, "documents": len(data.corpus_ids), "shard_size": SHARD_SIZE,
        }, indent=1), encoding="utf-8")
    progress = None
    if show_progress:
        from tqdm.auto import tqdm

        progress = tqdm(total=len(order), desc="Encoding documents", unit="doc", file=sys.stderr)
    parts: list[np.ndarray] = []
    for number, shard in enumerate(shards):
        path = folder / f"part-{number:05d}.npy"
        block = None
        if use_cache and path.is_file():
            block = np.load(path, allow_pickle=False)
            if block.shape[0] != len(shard):
                block = None
        if block is None:
            block = np.asarray(
                encoder.encode_documents([data.corpus_texts[i] for i in shard], batch_size=batch_size,
                                         show_progress_bar=False, normalize_embeddings=True),
                dtype=np.float32,
            )
            if use_cache:
                _save_npy(path, block)
        parts.append(block)
        if progress is not None:
            progress.update(len(shard))
    if progress is not None:
        progress.close()
    dim = int(encoder.dim)
    vectors = np.empty((len(order), dim), dtype=np.float32)
    if order:
        vectors[np.asarray(order)] = np.concatenate(parts, axis=0)
    vectors = _normalise(vectors)
    if use_cache:
        _save_npy(final, vectors)
        for number in range(len(shards)):
            (folder / f"part-{number:05d}.npy").unlink(missing_ok=True)
    return vectors, False


def _normalise(x: np.ndarray) -> np.ndarray:
    norms = np.linalg.norm(x, axis=1, keepdims=True)
    return (x / np.maximum(norms, 1e-12)).astype(np.float32)


def top_k(query_vectors: np.ndarray, doc_vectors: np.ndarray, k: int, block: int = 256) -> np.ndarray:
    """Indices of the ``k`` highest inner products per query, best first (exact search)."""
    return top_k_scored(query_vectors, doc_vectors, k, block)[0]


def top_k_scored(query_vectors: np.ndarray, doc_vectors: np.ndarray, k: int,
                 block: int = 256) -> tuple[np.ndarray, np.ndarray]:
    """(indices, inner products) of the ``k`` best documents per query, best first (exact search)."""
    k = min(k, doc_vectors.shape[0])
    result = np.empty((query_vectors.shape[0], k), dtype=np.int64)
    result_scores = np.empty((query_vectors.shape[0], k), dtype=np.float32)
    for s in range(0, query_vectors.shape[0], block):
        scores = query_vectors[s : s + block] @ doc_vectors.T
        part = np.argpartition(-scores, k - 1, axis=1)[:, :k]
        part_scores = np.take_along_axis(scores, part, axis=1)
        order = np.argsort(-part_scores, axis=1, kind="stable")
        result[s : s + block] = np.take_along_axis(part, order, axis=1)
        result_scores[s : s + block] = np.take_along_axis(part_scores, order, axis=1)
    return result, result_scores


def lexical_corpus(data: BeirData) -> sqlite3.Connection:
    """An in-memory SQLite with the index's own lexical (FTS5) table over the corpus: the same analysis and BM25.

    A document is stored as ``index`` stores a ``# title`` + text file: the text (title included) in
    the text column, the title again in the heading column.
    """
    conn = sqlite3.connect(":memory:")
    conn.execute("CREATE TABLE chunks (id INTEGER PRIMARY KEY, text TEXT NOT NULL, heading TEXT NOT NULL DEFAULT '',"
                 " source TEXT NOT NULL DEFAULT '')")
    conn.executescript(lexical.schema())
    with conn:
        titles = data.corpus_titles or [""] * len(data.corpus_texts)
        conn.executemany("INSERT INTO chunks(id, text, heading) VALUES (?, ?, ?)",
                         ((i, t, h) for i, (t, h) in enumerate(zip(data.corpus_texts, titles))))
    return conn


def default_instruction(dataset: str, encoder: Any) -> str:
    """The dataset's instruction from :data:`DATASET_INSTRUCTIONS`, else the encoder's query instruction."""
    return DATASET_INSTRUCTIONS.get(dataset.lower(), getattr(encoder, "query_instruction", ""))


@dataclass
class Candidates:
    """Each side's top candidates per query, (corpus position, score) best first, and how long they took."""

    dense: dict[str, list[tuple[int, float]]] = field(default_factory=dict)
    lexical: dict[str, list[tuple[int, float]]] = field(default_factory=dict)
    info: dict[str, Any] = field(default_factory=dict)


def retrieval_candidates(encoder: Any, data: BeirData, modes: Sequence[str] = ("dense",), depth: int = 100,
                         instruction: str | None = None, batch_size: int = 32, show_progress: bool = True,
                         use_cache: bool = True, log: Callable[[str], None] | None = None) -> Candidates:
    """The dense and/or lexical top ``depth`` for every judged query (the expensive part of an evaluation)."""
    qids = list(data.qrels)
    out = Candidates()
    if "dense" in modes:
        if encoder is None:
            raise LLM2VecError("dense and hybrid search need an encoder")
        instr = default_instruction(data.name, encoder) if instruction is None else instruction
        start = time.perf_counter()
        docs, cached = encode_corpus_cached(encoder, data, batch_size, show_progress, use_cache)
        doc_seconds = time.perf_counter() - start
        if log:
            log(f"{len(data.corpus_ids)} documents {'from the cache' if cached else 'encoded'} in {doc_seconds:.1f}s")
        start = time.perf_counter()
        queries = encoder.encode_queries([data.queries[q] for q in qids], instruction=instr, batch_size=batch_size,
                                         show_progress_bar=False, normalize_embeddings=True)
        queries = _normalise(np.asarray(queries, dtype=np.float32).reshape(len(qids), -1))
        query_seconds = time.perf_counter() - start
        hits, scores = top_k_scored(queries, docs, depth)
        out.dense = {q: [(int(j), float(x)) for j, x in zip(row, srow)] for q, row, srow in zip(qids, hits, scores)}
        out.info.update({"model": getattr(encoder, "name", ""), "fingerprint": encoder.fingerprint(),
                         "instruction": instr, "docs_from_cache": cached, "encode_documents_s": round(doc_seconds, 2),
                         "encode_queries_s": round(query_seconds, 2)})
    if "lexical" in modes:
        start = time.perf_counter()
        conn = lexical_corpus(data)
        build_seconds = time.perf_counter() - start
        start = time.perf_counter()
        out.lexical = {q: lexical.search(conn, data.queries[q], depth) for q in qids}
        out.info.update({"lexical_build_s": round(build_seconds, 2),
                         "lexical_search_s": round(time.perf_counter() - start, 2)})
        conn.close()
    return out


def score_candidates(candidates: Candidates, data: BeirData, settings: SearchSettings) -> dict[str, float]:
    """Metrics of ranking ``candidates`` the way ``settings`` says (fused for hybrid), 100 per query."""
    rankings = {}
    for q in data.qrels:
        if settings.mode == "hybrid":
            row = fuse(candidates.dense[q], candidates.lexical[q], settings, 100)
        else:
            row = single((candidates.dense if settings.mode == "dense" else candidates.lexical)[q], settings.mode, 100)
        rankings[q] = [data.corpus_ids[f.id] for f in row]
    return evaluate_rankings(rankings, data.qrels)


def run_retrieval_eval(
    encoder: Any,
    data: BeirData,
    instruction: str | None = None,
    batch_size: int = 32,
    show_progress: bool = True,
    use_cache: bool = True,
    log: Callable[[str], None] | None = None,
    search: SearchSettings | None = None,
) -> dict[str, Any]:
    """Rank the corpus for every judged query and score it: one JSON-ready dict.

    ``search`` chooses the mode as in ``Index.search`` (default ``dense``): ``lexical``
    needs no encoder (pass None), ``hybrid`` fuses both sides' top 100 with the index's
    own fusion code. Ranked lists are 100 long (recall@100).
    """
    settings = search or SearchSettings.of("dense")
    modes = ("dense", "lexical") if settings.mode == "hybrid" else (settings.mode,)
    candidates = retrieval_candidates(encoder, data, modes, settings.depth(100), instruction, batch_size,
                                      show_progress, use_cache, log)
    metrics = score_candidates(candidates, data, settings)
    result: dict[str, Any] = {"dataset": data.name, "split": data.split, "mode": settings.mode}
    if settings.mode == "hybrid":
        result.update({"fusion": settings.fusion, "alpha": settings.alpha, "candidates": settings.candidates})
    info = dict(candidates.info)
    timings = {k: info.pop(k) for k in list(info) if k.endswith("_s") or k == "docs_from_cache"}
    result.update(info)
    result.update({"documents": len(data.corpus_ids), "queries": len(data.qrels),
                   **{name: round(value, 5) for name, value in metrics.items()}, **timings})
    return result
