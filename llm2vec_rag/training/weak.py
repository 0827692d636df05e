"""Weakly supervised pairs from the structure of a folder of documents (no labels).

The folder is read the way ``llm2vec-rag index`` reads it (the same walk: ``.gitignore``, hidden
files and size limits; the same readers: Markdown, reST, HTML, PDF, text) and three kinds of
(query, positive) pairs come out of every document:

- ``heading``: a section's heading path (``Title > Section > Subsection``) -> the section's text;
- ``title``: the document's title (its first top-level heading, else the file name) -> the opening of its body;
- ``ict`` (inverse cloze, Lee et al. 2019): a sentence of a passage -> the rest of that passage.

Positives are cut to ``max_words`` words; pairs with positives shorter than ``min_words`` are
dropped, exact duplicates too. Hard negatives come from BM25 over all positives
(:func:`llm2vec_rag.training.mining.bm25_negatives`). The choice of the cloze sentence is a
pure function of the file path and ``seed``.
"""
from __future__ import annotations

import hashlib
import re
from collections import Counter
from pathlib import Path

import numpy as np

from .data import Pair, TrainingDataError, split_sentences

_HEADING_LINE = re.compile(r"^\s{0,3}(#{1,6}\s|[=\-~^*+#`:'\"]{3,}\s*$)")
_WS = re.compile(r"\s+")


def _cut(text: str, max_words: int) -> str:
    words = text.split()
    return " ".join(words[:max_words])


def _body(text: str, headings: tuple[str, ...]) -> str:
    """Section text without its heading lines (ATX ``#`` lines, setext/reST adornments, the titles)."""
    titles = {h.strip() for h in headings}
    kept = [line for line in text.split("\n")
            if not _HEADING_LINE.match(line) and line.strip() not in titles]
    return "\n".join(kept).strip()


def _paragraphs(text: str) -> list[str]:
    return [_WS.sub(" ", p).strip() for p in re.split(r"\n\s*\n", text) if p.strip()]


def _title_from_name(rel: str) -> str:
    return _WS.sub(" ", re.sub(r"[_\-.]+", " ", Path(rel).stem)).strip()


def folder_pairs(folder: str, max_words: int = 120, min_words: int = 8, ict_per_passage: int = 1,
                 seed: int = 42, extensions=None) -> tuple[list[Pair], dict]:
    """The weak pairs of every readable document under ``folder`` and a summary (counts per kind)."""
    from ..index.ingest import walk
    from ..index.readers import UnreadableFileError, read_document

    result = walk(folder, extensions=extensions)
    if not result.files:
        raise TrainingDataError(f"{folder} holds no file the index would read")
    pairs: list[Pair] = []
    seen: set[tuple[str, str]] = set()
    counts: Counter = Counter()

    def add(kind: str, query: str, positive: str) -> None:
        query, positive = _WS.sub(" ", query).strip(), _cut(positive, max_words)
        if not query or len(positive.split()) < min_words or query == positive:
            counts[f"dropped_{kind}"] += 1
            return
        key = (query.lower(), positive.lower())
        if key in seen:
            return
        seen.add(key)
        pairs.append(Pair(query, positive, query_id=str(len(pairs)), positive_id=positive, source=kind))
        counts[kind] += 1

    for candidate in result.files:
        try:
            doc = read_document(candidate.path, candidate.path.read_bytes())
        except (UnreadableFileError, OSError):
            counts["unreadable_files"] += 1
            continue
        counts["files"] += 1
        title = doc.title.strip() or _title_from_name(candidate.rel)
        bodies = []
        for section in doc.sections:
            body = _body(doc.text[section.start : section.end], section.headings)
            if not body:
                continue
            bodies.append(body)
            if section.headings:
                path = list(section.headings)
                if title and path[0] != title:
                    path.insert(0, title)
                add("heading", " > ".join(path), _WS.sub(" ", body))
        whole = "\n\n".join(bodies)
        if title and whole:
            add("title", title, _WS.sub(" ", whole))
        if ict_per_passage:
            digest = int(hashlib.sha256(f"{seed}:{candidate.rel}".encode()).hexdigest()[:12], 16)
            rng = np.random.default_rng(digest)
            for passage in _paragraphs(whole):
                sentences = split_sentences(passage)
                usable = [i for i, s in enumerate(sentences) if len(s.split()) >= 5]
                if len(sentences) < 3 or not usable:
                    continue
                for i in rng.choice(usable, size=min(ict_per_passage, len(usable)), replace=False):
                    rest = " ".join(s for j, s in enumerate(sentences) if j != i)
                    add("ict", sentences[i], rest)
    if not pairs:
        raise TrainingDataError(f"{folder}: no pairs (headings, titles or passages of 3+ sentences) in "
                                f"{counts['files']} documents")
    return pairs, {"files": counts.pop("files", 0), "pairs": len(pairs), **dict(counts)}


def add_bm25_negatives(pairs: list[Pair], k: int = 1) -> int:
    """Give each pair up to ``k`` BM25 hard negatives among the other pairs' positives; returns how many."""
    from .mining import bm25_negatives

    found = bm25_negatives([p.query for p in pairs], [p.positive for p in pairs], k=k)
    added = 0
    for pair, hits in zip(pairs, found):
        pair.negatives = [*pair.negatives, *(pairs[j].positive for j in hits)]
        added += len(hits)
    return added


__all__ = ["folder_pairs", "add_bm25_negatives"]
