"""The lexical side of hybrid search: an SQLite FTS5 table over the chunks, ranked by BM25.

Why FTS5: the chunks already live in SQLite, so the lexical index is written by
triggers inside the very transactions that write the chunk rows — crash safety,
incremental updates, deletion and ``--rebuild`` need no extra code, and it works
the same whichever vector backend (FAISS, Qdrant) holds the vectors.

Text analysis (both sides): FTS5's ``unicode61`` tokenizer (Unicode letters and
digits are token characters, everything else separates; case folded; diacritics
removed) followed by the Porter stemmer. English stop words are dropped from the
query here, in Python; the user's text is never passed to FTS5 as syntax: each
remaining term is quoted and the terms are OR-joined, so ``"``, ``*``, ``NEAR``,
``col:``, ``-``, parentheses and ``AND``/``OR``/``NOT`` are just words.

Ranking: FTS5's built-in ``bm25()`` (k1 = 1.2, b = 0.75, IDF ``log((N - n + 0.5) / (n + 0.5))``),
over three columns: the chunk text, its heading and the file name, weighted by
:data:`COLUMN_WEIGHTS`. The heading's weight (3) was chosen on SciFact train queries
(``benchmarks/bm25_params.py``); BM25 computed from FTS5's term statistics with k1 and b
tuned was not measurably better there, so FTS5 ranks alone. ``docs/retrieval.md`` reports both.
"""
from __future__ import annotations

import re
import sqlite3
from collections.abc import Sequence

TABLE = "chunks_fts"
TOKENIZE = "porter unicode61 remove_diacritics 2"
COLUMNS = ("text", "heading", "name")
COLUMN_WEIGHTS = (1.0, 3.0, 1.0)  # text, heading, file name: heading 3 chosen on SciFact train
MAX_QUERY_TERMS = 256  # a 100 KB query keeps its first 256 distinct terms

# The file name of a chunk's source path, in SQL (the part after the last "/").
_NAME = "substr({src}, length(rtrim({src}, replace({src}, '/', ''))) + 1)"

# English stop words (the NLTK list, apostrophes removed as the tokenizer splits on them).
STOP_WORDS = frozenset("""
a about above after again against ain all am an and any are aren as at be because been before being below
between both but by can couldn could d did didn do does doesn doing don down during each few for from further
had hadn has hasn have haven having he her here hers herself him himself his how i if in into is isn it its
itself just ll m ma me mightn more most mustn my myself needn no nor not now o of off on once only or other our
ours ourselves out over own re s same shan she should shouldn so some such t than that the their theirs them
themselves then there these they this those through to too under until up ve very was wasn we were weren what
when where which while who whom why will with won wouldn y you your yours yourself yourselves
""".split())

_TOKEN = re.compile(r"[^\W_]+")


def schema(chunks: str = "chunks", source_column: str = "source") -> str:
    """DDL for the FTS5 table, its content view and the triggers that keep it in step with ``chunks``.

    External content (``content=`` a view over the chunk rows): the text is stored once,
    in ``chunks``; FTS5 keeps only its inverted index.
    """
    name = lambda prefix: _NAME.format(src=f"{prefix}{source_column}")  # noqa: E731
    cols = ", ".join(COLUMNS)
    return f"""
    CREATE VIEW {TABLE}_content AS SELECT id, text, heading, {name('')} AS name FROM {chunks};
    CREATE VIRTUAL TABLE {TABLE} USING fts5({cols}, content='{TABLE}_content', content_rowid='id',
        tokenize='{TOKENIZE}');
    CREATE TRIGGER {TABLE}_insert AFTER INSERT ON {chunks} BEGIN
        INSERT INTO {TABLE}(rowid, {cols}) VALUES (new.id, new.text, new.heading, {name('new.')});
    END;
    CREATE TRIGGER {TABLE}_delete AFTER DELETE ON {chunks} BEGIN
        INSERT INTO {TABLE}({TABLE}, rowid, {cols}) VALUES ('delete', old.id, old.text, old.heading, {name('old.')});
    END;
    CREATE TRIGGER {TABLE}_update AFTER UPDATE ON {chunks} BEGIN
        INSERT INTO {TABLE}({TABLE}, rowid, {cols}) VALUES ('delete', old.id, old.text, old.heading, {name('old.')});
        INSERT INTO {TABLE}(rowid, {cols}) VALUES (new.id, new.text, new.heading, {name('new.')});
    END;
    INSERT INTO {TABLE}({TABLE}) VALUES ('rebuild');
    """


def query_terms(query: str) -> list[str]:
    """The distinct, case-folded, non-stop-word terms of ``query``, in order (at most ``MAX_QUERY_TERMS``)."""
    if isinstance(query, bytes):
        query = query.decode("utf-8", "replace")
    query = query.encode("utf-8", "replace").decode("utf-8")  # lone surrogates from odd bytes become '?'
    seen: dict[str, None] = {}
    for token in _TOKEN.findall(query.casefold()):
        if token not in STOP_WORDS and token not in seen:
            seen[token] = None
            if len(seen) == MAX_QUERY_TERMS:
                break
    return list(seen)


def match_expression(query: str) -> str:
    """A safe FTS5 ``MATCH`` expression: the query's terms, each quoted, OR-joined ('' when none is left)."""
    return " OR ".join(f'"{term}"' for term in query_terms(query))


def has_table(conn: sqlite3.Connection) -> bool:
    return conn.execute("SELECT 1 FROM sqlite_master WHERE name = ?", (TABLE,)).fetchone() is not None


def search(conn: sqlite3.Connection, query: str, n: int, allowed: Sequence[int] | None = None,
           weights: Sequence[float] = COLUMN_WEIGHTS) -> list[tuple[int, float]]:
    """The ``n`` best (chunk id, BM25 score) for ``query``, best first; only ``allowed`` ids when given.

    Scores are positive, larger is better (FTS5's ``bm25()`` negated). ``weights`` (text, heading,
    file name) is there for the benchmark that chose :data:`COLUMN_WEIGHTS`.
    """
    expression = match_expression(query)
    if not expression or n < 1 or (allowed is not None and not len(allowed)):
        return []
    if len(weights) != len(COLUMNS):
        raise ValueError(f"expected {len(COLUMNS)} column weights ({', '.join(COLUMNS)}), got {len(weights)}")
    column_weights = ", ".join(repr(float(w)) for w in weights)
    sql = f"SELECT rowid, -bm25({TABLE}, {column_weights}) AS score FROM {TABLE} WHERE {TABLE} MATCH ?"
    params: list = [expression]
    if allowed is not None:
        sql += " AND rowid IN (SELECT value FROM json_each(?))"
        params.append("[" + ",".join(str(int(i)) for i in allowed) + "]")
    sql += " ORDER BY score DESC, rowid LIMIT ?"
    params.append(int(n))
    return [(int(i), float(s)) for i, s in conn.execute(sql, params)]
