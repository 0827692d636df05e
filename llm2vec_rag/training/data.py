"""Training data readers and the restorable batch order.

Corpora (MNTP, SimCSE): a folder of ``.txt``/``.md`` files (paragraphs split at
blank lines), a ``.txt``/``.txt.gz``/``.raw``/``.raw.gz`` file with one
paragraph or sentence a line (WikiText headings `` = Title = `` are skipped and
its `` @-@ `` style tokenization undone), or JSON lines with a ``text`` field.

Pairs (supervised): JSON lines with ``query``, ``positive`` and optionally
``negative`` (a string) or ``negatives`` (a list of strings), or a BEIR folder
(``corpus.jsonl``, ``queries.jsonl``, ``qrels/<split>.tsv``).

Malformed input raises :class:`TrainingDataError` naming the file and line.
The batch order is a pure function of (seed, epoch), so a resumed run sees
exactly the batches an uninterrupted run would have seen.
"""
from __future__ import annotations

import os
import re
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from ..errors import LLM2VecError
from ..jsonl import iter_jsonl, open_text


class TrainingDataError(LLM2VecError):
    """Training data that is missing, empty or malformed (the message names file and line)."""


TEXT_SUFFIXES = (".txt", ".md", ".raw", ".text")
JSONL_SUFFIXES = (".jsonl", ".json")

_WIKI_HEADING = re.compile(r"^\s*(=\s+)+.*?(\s+=)+\s*$")
_WIKI_FIXES = [
    (re.compile(r" @([-.,])@ "), r"\1"),
    (re.compile(r" ([.,;:!?%)\]}'])"), r"\1"),
    (re.compile(r"([(\[{$]) "), r"\1"),
    (re.compile(r" (n't|'s|'re|'ve|'ll|'d|'m)\b"), r"\1"),
    (re.compile(r'" (.*?) "'), r'"\1"'),
]
_SENTENCE_END = re.compile(r"(?<=[.!?])\s+(?=[\"'(\[]?[A-Z0-9])")


def _suffixes(path: Path) -> list[str]:
    return [s.lower() for s in path.suffixes]




def detokenize_wikitext(line: str) -> str:
    """Undo WikiText's tokenization (`` @-@ ``, spaces before punctuation)."""
    for pattern, repl in _WIKI_FIXES:
        line = pattern.sub(repl, line)
    return line.strip()


def split_sentences(text: str) -> list[str]:
    """A simple rule-based sentence splitter (punctuation followed by a capital or digit)."""
    return [s.strip() for s in _SENTENCE_END.split(text) if s.strip()]


def _is_jsonl(path: Path) -> bool:
    sfx = _suffixes(path)
    return any(s in JSONL_SUFFIXES for s in sfx)


def _read_jsonl_texts(path: Path) -> Iterator[str]:
    for number, row in iter_jsonl(path, TrainingDataError):
        if not isinstance(row.get("text"), str):
            raise TrainingDataError(f"{path}:{number}: expected an object with a string 'text' field")
        if row["text"].strip():
            yield row["text"].strip()


def _read_line_texts(path: Path) -> Iterator[str]:
    wiki = "wikitext" in str(path).lower() or ".raw" in _suffixes(path)
    with open_text(path) as fh:
        for number, line in enumerate(fh, 1):
            if "\x00" in line:
                raise TrainingDataError(f"{path}:{number}: binary data (NUL byte) in a text file")
            text = line.strip()
            if not text:
                continue
            if wiki:
                if _WIKI_HEADING.match(line):
                    continue
                text = detokenize_wikitext(text)
            if text:
                yield text


def _read_document(path: Path) -> Iterator[str]:
    """A .txt/.md document: paragraphs separated by blank lines, joined into single lines."""
    with open_text(path) as fh:
        content = fh.read()
    if "\x00" in content:
        line = content[: content.index("\x00")].count("\n") + 1
        raise TrainingDataError(f"{path}:{line}: binary data (NUL byte) in a text file")
    for block in re.split(r"\n\s*\n", content):
        text = " ".join(part.strip() for part in block.splitlines() if part.strip())
        if text:
            yield text


def read_texts(data: str | os.PathLike[str], unit: str = "line", min_words: int = 1) -> list[str]:
    """All texts of a corpus (see the module doc), optionally split into sentences."""
    root = Path(data).expanduser()
    if not root.exists():
        raise TrainingDataError(f"training data {root} does not exist")
    texts: list[str] = []
    if root.is_dir():
        files = sorted(
            p for p in root.rglob("*")
            if p.is_file() and any(s in TEXT_SUFFIXES + JSONL_SUFFIXES for s in _suffixes(p))
        )
        if not files:
            raise TrainingDataError(f"{root} holds no .txt, .md or .jsonl files")
        for path in files:
            if _is_jsonl(path):
                texts.extend(_read_jsonl_texts(path))
            elif ".raw" in _suffixes(path) or path.suffix.lower() == ".gz":
                texts.extend(_read_line_texts(path))  # line-per-paragraph files (WikiText)
            else:
                texts.extend(_read_document(path))
    elif _is_jsonl(root):
        texts.extend(_read_jsonl_texts(root))
    else:
        texts.extend(_read_line_texts(root))
    if unit == "sentence":
        texts = [s for t in texts for s in split_sentences(t)]
    elif unit != "line":
        raise LLM2VecError(f"unit must be 'sentence' or 'line', got {unit!r}")
    texts = [t for t in texts if len(t.split()) >= min_words]
    if not texts:
        raise TrainingDataError(f"no usable text in {root}")
    return texts


def pack_tokens(tokenizer, texts: Sequence[str], block: int, batch: int = 1000) -> np.ndarray:
    """Tokenize ``texts`` and pack them into blocks of ``block`` tokens: BOS at each block's start,
    EOS between texts (the reference MNTP recipe's ``group_texts``). Returns (n_blocks, block) int64.
    """
    bos = tokenizer.bos_token_id
    eos = tokenizer.eos_token_id
    body = block - (1 if bos is not None else 0)
    stream: list[int] = []
    for s in range(0, len(texts), batch):
        enc = tokenizer(list(texts[s : s + batch]), add_special_tokens=False)["input_ids"]
        for ids in enc:
            stream.extend(ids)
            if eos is not None:
                stream.append(eos)
    n = len(stream) // body
    if n == 0:
        raise TrainingDataError(
            f"the corpus has {len(stream)} tokens: not enough for one block of {block}; lower --max-length"
        )
    arr = np.asarray(stream[: n * body], dtype=np.int64).reshape(n, body)
    if bos is not None:
        arr = np.concatenate([np.full((n, 1), bos, dtype=np.int64), arr], axis=1)
    return arr


# --------------------------------------------------------------------------- supervised pairs
@dataclass
class Pair:
    query: str
    positive: str
    negatives: list[str] = field(default_factory=list)
    query_id: str = ""
    positive_id: str = ""  # equal ids mean the same document (for batch construction)
    source: str = ""  # where the pair comes from (batches hold one source at a time)
    score: float | None = None  # a graded similarity (0-1): trained with a score-aware loss, not as a positive
    instruction: str | None = None  # the query instruction for this pair (None: the run's)


def read_pairs_jsonl(path: str | os.PathLike[str]) -> list[Pair]:
    """``{"query": ..., "positive": ..., "negative": ... | "negatives": [...]}`` per line."""
    path = Path(path).expanduser()
    if not path.is_file():
        raise TrainingDataError(f"pairs file {path} does not exist")
    pairs: list[Pair] = []
    for number, row in iter_jsonl(path, TrainingDataError):
        query, positive = row.get("query"), row.get("positive")
        if not isinstance(query, str) or not query.strip():
            raise TrainingDataError(f"{path}:{number}: missing or empty string field 'query'")
        if not isinstance(positive, str) or not positive.strip():
            raise TrainingDataError(f"{path}:{number}: missing or empty string field 'positive'")
        negatives = row.get("negatives", [])
        if "negative" in row:
            negatives = [row["negative"], *(negatives or [])]
        if not isinstance(negatives, list) or not all(isinstance(n, str) for n in negatives):
            raise TrainingDataError(f"{path}:{number}: 'negative' must be a string, 'negatives' a list of strings")
        source, score, instruction = row.get("source", ""), row.get("score"), row.get("instruction")
        if not isinstance(source, str):
            raise TrainingDataError(f"{path}:{number}: 'source' must be a string")
        if score is not None and (isinstance(score, bool) or not isinstance(score, (int, float))
                                  or not 0.0 <= score <= 1.0):
            raise TrainingDataError(f"{path}:{number}: 'score' must be a number from 0 to 1")
        if instruction is not None and not isinstance(instruction, str):
            raise TrainingDataError(f"{path}:{number}: 'instruction' must be a string")
        pairs.append(Pair(query.strip(), positive.strip(), [n for n in negatives if n.strip()],
                          query_id=str(number), positive_id=positive.strip(), source=source,
                          score=None if score is None else float(score), instruction=instruction))
    if not pairs:
        raise TrainingDataError(f"{path} holds no pairs")
    return pairs


def read_pairs_beir(folder: str | os.PathLike[str], split: str = "train") -> tuple[list[Pair], dict[str, str]]:
    """One pair per (query, relevant document) of ``qrels/<split>.tsv``; also returns the corpus (id → text)."""
    from ..evaluation.retrieval import load_beir

    data = load_beir(folder, split=split)
    corpus = dict(zip(data.corpus_ids, data.corpus_texts))
    pairs = []
    for qid, rel in data.qrels.items():
        for did, score in rel.items():
            if score > 0 and did in corpus:
                pairs.append(Pair(data.queries[qid], corpus[did], [], query_id=qid, positive_id=did))
    if not pairs:
        raise TrainingDataError(f"{folder}: qrels/{split}.tsv gives no (query, document) pair present in the corpus")
    return pairs, corpus


def is_beir_folder(path: str | os.PathLike[str]) -> bool:
    p = Path(path).expanduser()
    return p.is_dir() and (p / "corpus.jsonl").is_file() and (p / "queries.jsonl").is_file()


# --------------------------------------------------------------------------- restorable order
class BatchOrder:
    """Batches of example indices for any global micro-batch number, a pure function of the seed.

    Epoch ``e`` is a permutation drawn from ``default_rng([seed, e])``; the last
    incomplete batch of an epoch is dropped. ``groups`` (one key per example)
    keeps two examples with the same key out of one batch: a conflicting example
    is deferred to the next batch that has room for it. ``sources`` (one name
    per example) makes every batch hold examples of one source: each source's
    examples are batched on their own and the epoch's batches then shuffled, so
    sources are drawn in proportion to their size.
    """

    def __init__(self, n: int, batch_size: int, seed: int, groups: Sequence[str] | None = None,
                 sources: Sequence[str] | None = None) -> None:
        if n < batch_size:
            raise TrainingDataError(f"{n} training examples: fewer than one batch of {batch_size}")
        self.n = n
        self.batch_size = batch_size
        self.seed = seed
        self.groups = list(groups) if groups is not None else None
        self.sources = list(sources) if sources is not None and len(set(sources)) > 1 else None
        self._cache: dict[int, list[list[int]]] = {}
        self.per_epoch = len(self._epoch(0))

    def _epoch(self, epoch: int) -> list[list[int]]:
        if epoch in self._cache:
            return self._cache[epoch]
        perm = np.random.default_rng([self.seed, epoch]).permutation(self.n).tolist()
        if self.sources is None:
            batches = self._batches(perm)
        else:
            by_source: dict[str, list[int]] = {}
            for i in perm:
                by_source.setdefault(self.sources[i], []).append(i)
            batches = [b for name in sorted(by_source) for b in self._batches(by_source[name])]
            shuffle = np.random.default_rng([self.seed, epoch, 1]).permutation(len(batches))
            batches = [batches[j] for j in shuffle]
        if not batches:
            raise TrainingDataError(
                f"cannot form one batch of {self.batch_size} examples with distinct positives; lower --batch-size"
            )
        self._cache = {epoch: batches}
        return batches

    def _batches(self, perm: list[int]) -> list[list[int]]:
        if self.groups is None:
            return [perm[s : s + self.batch_size] for s in range(0, len(perm) - self.batch_size + 1, self.batch_size)]
        return self._grouped(perm)

    def _grouped(self, perm: list[int]) -> list[list[int]]:
        assert self.groups is not None
        groups, size = self.groups, self.batch_size
        batches: list[list[int]] = []
        batch: list[int] = []
        seen: set[str] = set()
        deferred: list[int] = []
        for i in perm:
            if groups[i] in seen:
                deferred.append(i)
                continue
            batch.append(i)
            seen.add(groups[i])
            while len(batch) == size:
                batches.append(batch)
                batch, seen, rest = [], set(), []
                for j in deferred:  # deferred examples go first into the next batch
                    if len(batch) < size and groups[j] not in seen:
                        batch.append(j)
                        seen.add(groups[j])
                    else:
                        rest.append(j)
                deferred = rest
        return batches

    def batch(self, index: int) -> list[int]:
        """Example indices of global micro-batch ``index`` (epochs follow each other)."""
        epoch, within = divmod(index, self.per_epoch)
        return self._epoch(epoch)[within]
