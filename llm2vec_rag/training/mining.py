"""Hard negatives by BM25: for each (query, positive), the best-ranked other document that is not a likely positive.

The documents go into an in-memory SQLite FTS5 table (the ``porter unicode61`` analysis the
lexical index uses) and each query, stop words dropped and every term quoted (the text is
never FTS5 syntax), is ranked with FTS5's ``bm25()``. A candidate is skipped as a likely
false negative when it is the pair's own positive, when it is the positive of a pair with
the same query (another passage of the same section, say), or when it shares most of its
words with the positive (``max_overlap``, Jaccard over word sets: a near duplicate).
"""
from __future__ import annotations

import re
import sqlite3
from collections import Counter
from collections.abc import Callable, Sequence

TOKENIZE = "porter unicode61 remove_diacritics 2"
MAX_QUERY_TERMS = 64
_TOKEN = re.compile(r"[^\W_]+")
STOP_WORDS = frozenset("""
a about above after again against all am an and any are as at be because been before being below between both
but by can could did do does doing down during each few for from further had has have having he her here hers
him his how i if in into is it its itself just me more most my no nor not now of off on once only or other our
out over own same she should so some such than that the their them then there these they this those through to
too under until up very was we were what when where which while who whom why will with you your
""".split())


def _match_expression(text: str, df: dict[str, int] | None = None, common: int = 0) -> str:
    """OR of the query's quoted terms; with ``df``, terms in more than ``common`` documents are left out
    (they barely change BM25's order and make the query slow), except that the two rarest stay."""
    terms = [t for t in dict.fromkeys(_TOKEN.findall(text.lower())) if t not in STOP_WORDS][:MAX_QUERY_TERMS]
    if df is not None and terms:
        rare = [t for t in terms if df.get(t, 0) <= common]
        terms = rare or sorted(terms, key=lambda t: df.get(t, 0))[:2]
    return " OR ".join('"' + t.replace('"', '""') + '"' for t in terms)


def _words(text: str) -> set[str]:
    return set(_TOKEN.findall(text.lower()))


def bm25_negatives(queries: Sequence[str], positives: Sequence[str], k: int = 1, depth: int = 20,
                   max_overlap: float = 0.7, skip: int = 0, common_share: float = 0.02,
                   progress: Callable[[int], None] | None = None) -> list[list[int]]:
    """For pair ``i`` (``queries[i]``, ``positives[i]``): up to ``k`` indices into ``positives`` of hard
    negatives, best BM25 rank first, from the top ``depth`` hits (likely positives skipped, see the module;
    ``skip`` also passes over the first eligible hits, where unlabeled positives are common). Query terms
    found in more than ``common_share`` of the documents are dropped (speed; see ``_match_expression``)."""
    if len(queries) != len(positives):
        raise ValueError("queries and positives differ in length")
    docs = list(dict.fromkeys(positives))
    doc_index = {d: i for i, d in enumerate(docs)}
    owners: dict[str, set[str]] = {}  # query -> its positives (a query may have several)
    for q, p in zip(queries, positives):
        owners.setdefault(q, set()).add(p)
    first_pair = {}
    for i, p in enumerate(positives):
        first_pair.setdefault(p, i)
    df: Counter[str] = Counter()
    for d in docs:
        df.update(_words(d))
    common = max(1, int(common_share * len(docs)))
    db = sqlite3.connect(":memory:")
    try:
        db.execute(f"CREATE VIRTUAL TABLE docs USING fts5(text, tokenize='{TOKENIZE}')")
        db.executemany("INSERT INTO docs(rowid, text) VALUES (?, ?)", ((i + 1, d) for i, d in enumerate(docs)))
        out: list[list[int]] = []
        word_cache: dict[int, set[str]] = {}
        for n, (query, positive) in enumerate(zip(queries, positives)):
            expr = _match_expression(query, df, common)
            found: list[int] = []
            passed = 0
            if expr:
                rows = db.execute("SELECT rowid FROM docs WHERE docs MATCH ? ORDER BY bm25(docs) LIMIT ?",
                                  (expr, depth)).fetchall()
                own = word_cache.setdefault(doc_index[positive], _words(positive))
                for (rowid,) in rows:
                    doc = docs[rowid - 1]
                    if doc in owners[query]:
                        continue
                    words = word_cache.setdefault(rowid - 1, _words(doc))
                    union = len(own | words)
                    if union and len(own & words) / union > max_overlap:
                        continue
                    if passed < skip:
                        passed += 1
                        continue
                    found.append(first_pair[doc])
                    if len(found) == k:
                        break
            out.append(found)
            if progress is not None and n % 1000 == 0:
                progress(n)
        return out
    finally:
        db.close()


__all__ = ["bm25_negatives"]
