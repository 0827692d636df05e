"""Split documents into chunks counted in the model's tokens.

Chunks never cross a heading (or a PDF page); inside a section they break at
paragraph ends when that keeps a chunk at least half full, else at sentence or
line ends, and only a sentence longer than the budget is cut between tokens.
Overlap repeats whole trailing sentences, up to ``overlap`` tokens.

Token counting takes any of: an encoder (its ``tokenizer``), a Hugging Face
tokenizer, or a plain ``callable(text) -> int`` (tests pass a whitespace counter).
"""
from __future__ import annotations

import hashlib
import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Protocol

from ..errors import LLM2VecError
from .readers import Document, Section


class TokenCounter(Protocol):
    def count(self, texts: list[str]) -> list[int]: ...

    def split(self, text: str, max_tokens: int) -> list[tuple[int, int]]: ...


class TokenizerCounter:
    """Counts with a Hugging Face (fast) tokenizer; splits at token offsets."""

    def __init__(self, tokenizer: Any) -> None:
        self.tokenizer = tokenizer

    def count(self, texts: list[str]) -> list[int]:
        if not texts:
            return []
        ids = self.tokenizer(list(texts), add_special_tokens=False)["input_ids"]
        return [len(x) for x in ids]

    def split(self, text: str, max_tokens: int) -> list[tuple[int, int]]:
        enc = self.tokenizer(text, add_special_tokens=False, return_offsets_mapping=True)
        offsets = [tuple(o) for o in enc["offset_mapping"]]
        spans = []
        for s in range(0, len(offsets), max_tokens):
            group = offsets[s : s + max_tokens]
            start = group[0][0] if not spans else spans[-1][1]
            end = group[-1][1] if s + max_tokens < len(offsets) else len(text)
            if end > start:
                spans.append((start, end))
        return spans or [(0, len(text))]


class CallableCounter:
    """Counts with ``fn(text) -> int``; splits between words (between characters if it must)."""

    def __init__(self, fn: Callable[[str], int]) -> None:
        self.fn = fn

    def count(self, texts: list[str]) -> list[int]:
        return [int(self.fn(t)) for t in texts]

    def split(self, text: str, max_tokens: int) -> list[tuple[int, int]]:
        words = [m.span() for m in re.finditer(r"\S+", text)]
        spans: list[tuple[int, int]] = []
        i = 0
        while i < len(words):
            start, j = words[i][0], i + 1
            while j < len(words) and self.fn(text[start : words[j][1]]) <= max_tokens:
                j += 1
            end = words[j - 1][1]
            if self.fn(text[start:end]) > max_tokens:  # one word over the budget: cut by characters
                spans.extend(self._split_chars(text, start, end, max_tokens))
            else:
                spans.append((start, end))
            i = j
        return spans or [(0, len(text))]

    def _split_chars(self, text: str, start: int, end: int, max_tokens: int) -> list[tuple[int, int]]:
        out = []
        while start < end:
            lo, hi = start + 1, end
            while lo < hi:  # largest cut that fits
                mid = (lo + hi + 1) // 2
                if self.fn(text[start:mid]) <= max_tokens:
                    lo = mid
                else:
                    hi = mid - 1
            out.append((start, lo))
            start = lo
        return out


def make_counter(source: Any) -> TokenCounter:
    """A counter from an encoder, a tokenizer, a counter, or ``callable(text) -> int``."""
    if hasattr(source, "count") and hasattr(source, "split") and not isinstance(source, str):
        return source
    tokenizer = getattr(source, "tokenizer", None)
    if tokenizer is not None:
        return TokenizerCounter(tokenizer)
    if hasattr(source, "convert_tokens_to_ids") or _takes_special_tokens_flag(source):
        return TokenizerCounter(source)
    if callable(source):
        return CallableCounter(source)
    raise LLM2VecError(f"cannot count tokens with {type(source).__name__}: pass an encoder, a tokenizer or a callable")


def _takes_special_tokens_flag(fn: Any) -> bool:
    """A Hugging Face-style tokenizer call: ``tok(text, add_special_tokens=...)``."""
    import inspect

    try:
        return "add_special_tokens" in inspect.signature(fn).parameters
    except (TypeError, ValueError):
        return False


@dataclass
class Chunk:
    """One piece of a document, with where it came from."""

    text: str
    start: int
    end: int
    chunk: int
    heading: str = ""
    page: int | None = None
    tokens: int = 0

    @property
    def hash(self) -> str:
        return hashlib.sha256(self.text.encode("utf-8", errors="replace")).hexdigest()[:16]


@dataclass
class _Unit:
    start: int
    end: int
    tokens: int
    para_start: bool


_PARAGRAPH = re.compile(r"\n[ \t]*\n+")
_SENTENCE_END = re.compile(r"(?<=[.!?。！？])[\"')\]]*[ \t]+|\n")


def _spans(text: str, base: int, pattern: re.Pattern[str]) -> list[tuple[int, int]]:
    """Non-blank pieces of ``text`` between matches of ``pattern``, as absolute (start, end)."""
    out, pos = [], 0
    for m in pattern.finditer(text):
        out.append((pos, m.start()))
        pos = m.end()
    out.append((pos, len(text)))
    spans = []
    for s, e in out:
        piece = text[s:e]
        if piece.strip():
            lead = len(piece) - len(piece.lstrip())
            trail = len(piece.rstrip())
            spans.append((base + s + lead, base + s + trail))
    return spans


def _merge_heading_only(doc: Document) -> list[Section]:
    """Fold a section that holds only its heading line into the next one below it."""
    out: list[Section] = []
    pending: Section | None = None
    for section in doc.sections:
        if pending is not None:
            if section.headings[: len(pending.headings)] == pending.headings and section.page == pending.page:
                section = Section(pending.start, section.end, section.headings, section.page)
            else:
                out.append(pending)
            pending = None
        body = doc.text[section.start : section.end].strip().split("\n", 1)
        if section.headings and (len(body) == 1 or not body[1].strip(" \t\n=-~#*^")):
            pending = section
        else:
            out.append(section)
    if pending is not None:
        out.append(pending)
    return out


def chunk_document(doc: Document, counter: Any, chunk_tokens: int = 256, overlap: int = 32) -> list[Chunk]:
    """Chunks of at most ``chunk_tokens`` tokens (whole-sentence overlap up to ``overlap``)."""
    if chunk_tokens < 8:
        raise LLM2VecError(f"--chunk-tokens must be at least 8, got {chunk_tokens}")
    if overlap < 0 or overlap >= chunk_tokens:
        raise LLM2VecError(f"--overlap must be between 0 and chunk tokens - 1 ({chunk_tokens - 1}), got {overlap}")
    counter = make_counter(counter)
    chunks: list[Chunk] = []
    for section in _merge_heading_only(doc):
        units = _section_units(doc.text, section, counter, chunk_tokens)
        for start, end, tokens in _pack(doc.text, units, counter, chunk_tokens, overlap):
            chunks.append(Chunk(doc.text[start:end], start, end, len(chunks), " > ".join(section.headings),
                                section.page, tokens))
    return chunks


def _section_units(text: str, section: Section, counter: TokenCounter, budget: int) -> list[_Unit]:
    units: list[_Unit] = []
    for p_start, p_end in _spans(text[section.start : section.end], section.start, _PARAGRAPH):
        sentences = _spans(text[p_start:p_end], p_start, _SENTENCE_END)
        counts = counter.count([text[s:e] for s, e in sentences])
        first = True
        for (s, e), n in zip(sentences, counts):
            if n <= budget:
                units.append(_Unit(s, e, n, first))
            else:
                pieces = [(s + a, s + b) for a, b in counter.split(text[s:e], budget)]
                pieces = [(a, b) for a, b in pieces if text[a:b].strip()]
                for (a, b), m in zip(pieces, counter.count([text[a:b] for a, b in pieces])):
                    units.append(_Unit(a, b, m, first))
                    first = False
            first = False
    return units


def _pack(text: str, units: list[_Unit], counter: TokenCounter, budget: int, overlap: int):
    """Greedy packing of units into (start, end, tokens) chunks, preferring paragraph breaks."""
    i, n = 0, len(units)
    while i < n:
        j, total = i, 0
        while j < n and total + units[j].tokens <= budget:
            total += units[j].tokens
            j += 1
        j = max(j, i + 1)
        if j < n:
            for p in range(j - 1, i, -1):
                if units[p].para_start and sum(u.tokens for u in units[i:p]) >= budget // 2:
                    j = p
                    break
        while True:  # the sum of parts can differ from the whole by a token or two: check the whole
            start, end = units[i].start, units[j - 1].end
            tokens = counter.count([text[start:end]])[0]
            if tokens <= budget or j - 1 <= i:
                break
            j -= 1
        yield start, end, tokens
        if j >= n:
            break
        k, carried = j, 0
        while k - 1 > i and carried + units[k - 1].tokens <= overlap:
            k -= 1
            carried += units[k].tokens
        i = k
