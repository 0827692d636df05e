"""Property-based tests (hypothesis): the chunker, the readers, query handling, metadata and path round trips."""
from __future__ import annotations

import os
import re

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from fakes import FakeEncoder
from llm2vec_rag import Index
from llm2vec_rag.errors import LLM2VecError
from llm2vec_rag.index.chunk import chunk_document
from llm2vec_rag.index.ingest import display_path, key_to_path, path_key, valid_text
from llm2vec_rag.index.readers import UnreadableFileError, read_document, read_markdown
from test_index import write_docs

FAST = settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])


def whitespace_tokens(text: str) -> int:
    return len(text.split())


word = st.text(alphabet=st.characters(codec="utf-8", categories=["L", "N"]), min_size=1, max_size=12)
sentence = st.lists(word, min_size=1, max_size=30).map(lambda ws: " ".join(ws) + ".")
paragraph = st.lists(sentence, min_size=1, max_size=6).map(" ".join)
heading = st.tuples(st.integers(1, 3), st.lists(word, min_size=1, max_size=4)).map(
    lambda h: "#" * h[0] + " " + " ".join(h[1]))
block = st.one_of(paragraph, paragraph, heading)
markdown = st.lists(block, min_size=1, max_size=12).map("\n\n".join)


@FAST
@given(text=markdown, chunk_tokens=st.integers(8, 60), overlap_share=st.floats(0, 0.9))
def test_chunker_offsets_budget_and_coverage(text, chunk_tokens, overlap_share):
    overlap = int(overlap_share * (chunk_tokens - 1))
    doc = read_markdown(text)
    chunks = chunk_document(doc, whitespace_tokens, chunk_tokens, overlap)
    covered = np.zeros(len(text), dtype=np.int32)
    for i, c in enumerate(chunks):
        assert c.chunk == i and 0 <= c.start < c.end <= len(text)
        assert c.text == text[c.start:c.end]  # offsets are exact
        assert c.text == c.text.strip()  # no chunk starts or ends with blank space
        assert c.tokens == whitespace_tokens(c.text) <= chunk_tokens  # the budget holds
        covered[c.start:c.end] += 1
        section = next(s for s in doc.sections if s.start <= c.start < s.end or s.start < c.end <= s.end)
        assert section.start <= c.start and c.end <= max(s.end for s in doc.sections)
    for pos in (m.start() for m in re.finditer(r"\S", text)):
        assert covered[pos] >= 1, f"character {pos} ({text[pos]!r}) is in no chunk"  # every character covered
    if overlap == 0:
        assert covered.max(initial=0) <= 1  # without overlap: exactly once
    for a, b in zip(chunks, chunks[1:]):
        assert a.start <= b.start  # in document order
        if b.start < a.end:  # overlap repeats at most `overlap` tokens
            assert whitespace_tokens(text[b.start:a.end]) <= overlap


@FAST
@given(data=st.binary(max_size=3000), ext=st.sampled_from([".md", ".rst", ".html", ".txt", ".py", ".pdf"]))
def test_readers_never_raise_on_arbitrary_bytes(data, ext):
    try:
        doc = read_document(__import__("pathlib").Path(f"x{ext}"), data)
    except UnreadableFileError:
        assert ext == ".pdf"  # a PDF that is not one is reported, nothing else may raise
        return
    assert isinstance(doc.text, str)
    for s in doc.sections:
        assert 0 <= s.start <= s.end <= len(doc.text)
    doc.text.encode("utf-8")  # valid Unicode: storable and tokenizable


@FAST
@given(html=st.text(alphabet=st.sampled_from(list("<>!-/ab scriptyle=\"'&;\n")), max_size=300))
def test_html_never_shows_script_bodies(html):
    doc = read_document(__import__("pathlib").Path("x.html"), f"<p>ok</p><script>SECRET()</script>{html}".encode())
    assert "SECRET" not in doc.text


@pytest.fixture(scope="module")
def small_index(tmp_path_factory):
    root = tmp_path_factory.mktemp("prop")
    index = Index.build(write_docs(root / "docs"), path=root / "ix", encoder=FakeEncoder(), progress=False,
                        log=lambda m: None)
    yield index
    index.close()


@FAST
@given(query=st.text(max_size=200), k=st.integers(1, 30))
def test_any_query_text_is_answered_or_refused_in_one_line(small_index, query, k):
    try:
        hits = small_index.search(query, k=k)
    except LLM2VecError as exc:
        assert not query.strip() and "empty query" in str(exc)
        return
    assert len(hits) <= k and [h.rank for h in hits] == list(range(1, len(hits) + 1))


@FAST
@given(raw=st.binary(max_size=30).map(lambda b: os.fsdecode(b"/d/" + b.replace(b"/", b"_").replace(b"\0", b"_"))))
def test_stored_paths_round_trip(raw):
    key = path_key(raw)
    key.encode("utf-8")  # storable in SQLite
    display_path(raw).encode("utf-8")
    valid_text(raw).encode("utf-8")
    try:
        raw.encode("utf-8")
        assert key == raw  # normal paths are stored as they are
    except UnicodeEncodeError:
        assert key_to_path(key) == raw  # non-UTF-8 ones come back exactly


json_scalar = st.one_of(st.none(), st.booleans(), st.integers(-2**53, 2**53), st.text(max_size=20),
                        st.floats(allow_nan=False, allow_infinity=False))
metadata = st.dictionaries(st.text(alphabet="abcdefgh_", min_size=1, max_size=8), json_scalar, max_size=5)


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(items=st.lists(st.tuples(st.text(min_size=1, max_size=80).filter(str.strip), metadata), min_size=1,
                      max_size=5, unique_by=lambda t: t[0]))
def test_metadata_round_trip(tmp_path, items):
    texts = [valid_text(t) for t, _ in items]
    metas = [m for _, m in items]
    with Index.create(tmp_path / f"ix{abs(hash(tuple(texts)))}", FakeEncoder(), overwrite=True,
                      log=lambda m: None) as index:
        ids = index.add_texts(texts, metadatas=metas, ids=[f"id{i}" for i in range(len(texts))])
        records = index.get_by_ids(ids)
        assert [r.text for r in records] == texts
        for record, meta in zip(records, metas):
            for key, value in meta.items():
                assert record.metadata[key] == value
