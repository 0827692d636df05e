"""Chunking in tokens: budgets, overlap, headings, offsets, and the fallbacks for long sentences."""
from __future__ import annotations

import pytest

from fakes import WhitespaceTokenizer, whitespace_count
from llm2vec_rag.errors import LLM2VecError
from llm2vec_rag.index.chunk import chunk_document, make_counter
from llm2vec_rag.index.readers import Document, Section, read_markdown


def sentences(n: int, words: int = 6, tag: str = "s") -> str:
    return " ".join(" ".join(f"{tag}{i}w{j}" for j in range(words - 1)) + f" end{i}." for i in range(n))


def test_chunks_respect_the_budget_and_offsets():
    text = "\n\n".join(sentences(5, tag=f"p{p}") for p in range(6))
    doc = Document(text, [Section(0, len(text))])
    chunks = chunk_document(doc, whitespace_count, chunk_tokens=40, overlap=0)
    assert len(chunks) > 3
    for c in chunks:
        assert whitespace_count(c.text) <= 40
        assert text[c.start : c.end] == c.text
    covered = " ".join(c.text for c in chunks).split()
    assert covered == text.split()  # no overlap: every word exactly once, in order


def test_breaks_prefer_paragraphs_then_sentences():
    text = sentences(3, tag="a") + "\n\n" + sentences(3, tag="b")  # two 18-word paragraphs
    chunks = chunk_document(Document(text, [Section(0, len(text))]), whitespace_count, chunk_tokens=30, overlap=0)
    assert [c.text.split()[0][:1] for c in chunks] == ["a", "b"]
    long = sentences(10)
    for c in chunk_document(Document(long, [Section(0, len(long))]), whitespace_count, 20, 0):
        assert c.text.endswith(".")  # cut at sentence ends


def test_overlap_repeats_whole_trailing_sentences():
    text = sentences(12)
    chunks = chunk_document(Document(text, [Section(0, len(text))]), whitespace_count, chunk_tokens=24, overlap=6)
    assert len(chunks) >= 3
    for a, b in zip(chunks, chunks[1:]):
        assert b.start < a.end  # overlapping ranges
        assert a.text.endswith(b.text[: a.end - b.start])
        assert whitespace_count(b.text[: a.end - b.start]) <= 6


def test_sentence_longer_than_budget_is_split_by_tokens():
    text = " ".join(f"w{i}" for i in range(95))  # one "sentence", no punctuation
    chunks = chunk_document(Document(text, [Section(0, len(text))]), whitespace_count, chunk_tokens=20, overlap=0)
    assert [whitespace_count(c.text) for c in chunks] == [20, 20, 20, 20, 15]
    # the same through the tokenizer path (offset mapping)
    chunks = chunk_document(Document(text, [Section(0, len(text))]), WhitespaceTokenizer(), 20, 0)
    assert [whitespace_count(c.text) for c in chunks] == [20, 20, 20, 20, 15]


def test_word_longer_than_budget_is_cut_by_characters():
    text = "x" * 50
    chunks = chunk_document(Document(text, [Section(0, len(text))]), lambda t: len(t), chunk_tokens=16, overlap=0)
    assert "".join(c.text for c in chunks) == text and all(len(c.text) <= 16 for c in chunks)


def test_headings_split_chunks_and_are_kept():
    text = "# Guide\n\nIntro words here.\n\n## Install\n\nRun the installer now.\n\n## Use\n\nSearch things.\n"
    chunks = chunk_document(read_markdown(text), whitespace_count, chunk_tokens=100, overlap=0)
    assert [c.heading for c in chunks] == ["Guide", "Guide > Install", "Guide > Use"]
    assert chunks[1].text.startswith("## Install") and "Run the installer" in chunks[1].text
    assert [c.chunk for c in chunks] == [0, 1, 2]


def test_heading_only_section_merges_into_its_child():
    text = "# Title\n\n## First\n\nBody text.\n"
    chunks = chunk_document(read_markdown(text), whitespace_count, chunk_tokens=100, overlap=0)
    assert len(chunks) == 1 and chunks[0].heading == "Title > First" and chunks[0].text.startswith("# Title")


def test_pages_are_kept():
    text = "page one text.\n\npage two text."
    doc = Document(text, [Section(0, 14, (), 1), Section(16, len(text), (), 2)])
    assert [c.page for c in chunk_document(doc, whitespace_count, 50, 0)] == [1, 2]


def test_real_tokenizer_counts(tiny_tokenizer):
    text = sentences(30)
    counter = make_counter(tiny_tokenizer)
    chunks = chunk_document(Document(text, [Section(0, len(text))]), tiny_tokenizer, chunk_tokens=64, overlap=8)
    assert len(chunks) > 2
    assert all(counter.count([c.text])[0] <= 64 for c in chunks)


def test_bad_settings():
    doc = Document("x", [Section(0, 1)])
    with pytest.raises(LLM2VecError, match="overlap"):
        chunk_document(doc, whitespace_count, chunk_tokens=16, overlap=16)
    with pytest.raises(LLM2VecError, match="chunk-tokens"):
        chunk_document(doc, whitespace_count, chunk_tokens=2)
