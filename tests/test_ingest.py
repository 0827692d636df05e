"""Walking folders and reading formats: globs, .gitignore, hidden files, bad files, HTML/Markdown/reST/PDF."""
from __future__ import annotations

import os

import pytest

from llm2vec_rag.errors import LLM2VecError
from llm2vec_rag.index.ingest import is_ignored, parse_gitignore, walk
from llm2vec_rag.index.readers import decode_bytes, read_document, read_html, read_markdown, read_rst


def minimal_pdf(pages: list[str]) -> bytes:
    """A valid PDF with one line of Helvetica text per page (offsets computed, so pypdf reads it)."""
    objects = ["<< /Type /Catalog /Pages 2 0 R >>", None, "<< /Type /Font /Subtype /Type1 /BaseFont /Helvetica >>"]
    kids = []
    for text in pages:
        stream = f"BT /F1 12 Tf 72 720 Td ({text}) Tj ET".encode()
        objects.append(f"<< /Length {len(stream)} >>\nstream\n{stream.decode()}\nendstream")
        content = len(objects)
        objects.append(f"<< /Type /Page /Parent 2 0 R /MediaBox [0 0 612 792] /Contents {content} 0 R "
                       f"/Resources << /Font << /F1 3 0 R >> >> >>")
        kids.append(f"{len(objects)} 0 R")
    objects[1] = f"<< /Type /Pages /Kids [{' '.join(kids)}] /Count {len(kids)} >>"
    out, offsets = bytearray(b"%PDF-1.4\n"), []
    for number, body in enumerate(objects, 1):
        offsets.append(len(out))
        out += f"{number} 0 obj\n{body}\nendobj\n".encode()
    xref = len(out)
    out += f"xref\n0 {len(objects) + 1}\n0000000000 65535 f \n".encode()
    out += "".join(f"{o:010d} 00000 n \n" for o in offsets).encode()
    out += f"trailer\n<< /Size {len(objects) + 1} /Root 1 0 R >>\nstartxref\n{xref}\n%%EOF\n".encode()
    return bytes(out)


def rels(result) -> list[str]:
    return [c.rel for c in result.files]


def test_walk_reads_known_types_and_counts_the_rest(tmp_path):
    (tmp_path / "a.md").write_text("# A\ntext")
    (tmp_path / "sub").mkdir()
    (tmp_path / "sub" / "b.txt").write_text("bee")
    (tmp_path / "sub" / "c.py").write_text("print(1)")
    (tmp_path / "image.png").write_bytes(b"\x89PNG....")
    (tmp_path / "empty.txt").write_text("")
    (tmp_path / ".hidden.md").write_text("secret")
    (tmp_path / ".git").mkdir()
    (tmp_path / ".git" / "config.txt").write_text("x")
    result = walk(tmp_path)
    assert rels(result) == ["a.md", "sub/b.txt", "sub/c.py"]
    assert result.skipped["unsupported"] == 1
    assert result.skipped["empty"] == 1
    assert result.skipped["hidden"] == 2  # the file and the .git folder
    assert any("zero-byte" in message for _, message in result.warnings)


def test_include_exclude_and_extension_list(tmp_path):
    for name in ("keep.md", "drop.md", "notes.txt", "code.rs"):
        (tmp_path / name).write_text("x")
    (tmp_path / "build").mkdir()
    (tmp_path / "build" / "out.md").write_text("x")
    assert rels(walk(tmp_path, include=["*.md"], exclude=["drop*", "build"])) == ["keep.md"]
    assert rels(walk(tmp_path, extensions=["rs"])) == ["code.rs"]
    assert rels(walk(tmp_path, extensions=["md,txt"], exclude=["build/*"])) == ["drop.md", "keep.md", "notes.txt"]


def test_gitignore_rules(tmp_path):
    (tmp_path / ".gitignore").write_text("*.log.txt\n/top.md\nbuild/\n!keep.log.txt\n")
    (tmp_path / "top.md").write_text("x")
    (tmp_path / "a.log.txt").write_text("x")
    (tmp_path / "keep.log.txt").write_text("x")
    (tmp_path / "d").mkdir()
    (tmp_path / "d" / "top.md").write_text("x")  # anchored rule: only the root one is ignored
    (tmp_path / "d" / ".gitignore").write_text("local.md\n")
    (tmp_path / "d" / "local.md").write_text("x")
    (tmp_path / "build").mkdir()
    (tmp_path / "build" / "x.md").write_text("x")
    assert rels(walk(tmp_path)) == ["d/top.md", "keep.log.txt"]
    assert len(rels(walk(tmp_path, gitignore=False))) == 6


def test_gitignore_matcher_directly():
    rules = parse_gitignore("docs/**/draft*.md\n*.tmp\n")
    assert is_ignored(rules, "docs/a/b/draft1.md", False)
    assert is_ignored(rules, "docs/draft.md", False)
    assert not is_ignored(rules, "other/draft.md", False)
    assert is_ignored(rules, "x/y/z.tmp", False)


def test_large_files_symlink_loops_and_missing_folder(tmp_path):
    (tmp_path / "big.txt").write_bytes(b"x" * 300_000)
    (tmp_path / "ok.txt").write_text("fine")
    (tmp_path / "loop").mkdir()
    os.symlink(tmp_path, tmp_path / "loop" / "back")
    os.symlink(tmp_path / "nowhere.txt", tmp_path / "broken.txt")
    result = walk(tmp_path, max_file_mb=0.1)
    assert rels(result) == ["ok.txt"]
    assert result.skipped["too_large"] == 1 and result.skipped["symlink_loop"] == 1
    assert result.skipped["unreadable"] == 1  # the broken link
    assert any("--max-file-mb" in m for _, m in result.warnings)
    with pytest.raises(LLM2VecError, match="does not exist"):
        walk(tmp_path / "missing")


def test_single_file_root(tmp_path):
    (tmp_path / "one.md").write_text("# One")
    assert rels(walk(tmp_path / "one.md")) == ["one.md"]


def test_markdown_headings_and_fences():
    text = "# Guide\nintro\n\n## Install\nrun it\n```\n# not a heading\n```\n\nSetup\n-----\nmore\n### Deep\nx\n"
    doc = read_markdown(text)
    paths = [(s.headings, text[s.start : s.end].split("\n")[0]) for s in doc.sections]
    assert paths == [(("Guide",), "# Guide"), (("Guide", "Install"), "## Install"),
                     (("Guide", "Setup"), "Setup"), (("Guide", "Setup", "Deep"), "### Deep")]
    assert doc.title == "Guide"


def test_rst_headings():
    text = "=====\nTitle\n=====\n\nIntro.\n\nPart one\n--------\n\nBody.\n\nSub\n~~~\n\nDeeper.\n\nPart two\n--------\nEnd.\n"
    doc = read_rst(text)
    assert [s.headings for s in doc.sections] == [
        ("Title",), ("Title", "Part one"), ("Title", "Part one", "Sub"), ("Title", "Part two")]


def test_html_visible_text_title_and_headings():
    html = ("<html><head><title>My Page</title><style>p{color:red}</style></head><body>"
            "<script>var x = 'hidden';</script><h1>Top</h1><p>First &amp; best.</p>"
            "<h2>Sub <em>part</em></h2><p>Second<br>line</p></body></html>")
    doc = read_html(html)
    assert doc.title == "My Page"
    assert "hidden" not in doc.text and "color" not in doc.text
    assert "First & best." in doc.text and "Second\nline" in doc.text
    assert [s.headings for s in doc.sections] == [("Top",), ("Top", "Sub part")]


def test_undecodable_bytes_are_replaced_and_utf16_is_read():
    assert decode_bytes(b"caf\xe9 ok") == "caf\ufffd ok"
    assert decode_bytes("héllo".encode("utf-16")) == "héllo"


def test_pdf_text_per_page(tmp_path):
    pytest.importorskip("pypdf")
    data = minimal_pdf(["First page words", "Second page words"])
    doc = read_document(tmp_path / "x.pdf", data)
    assert [s.page for s in doc.sections] == [1, 2]
    assert "First page" in doc.text[doc.sections[0].start : doc.sections[0].end]
    assert "Second page" in doc.text[doc.sections[1].start : doc.sections[1].end]


def test_broken_pdf_is_a_clear_error(tmp_path):
    pytest.importorskip("pypdf")
    from llm2vec_rag.index.readers import UnreadableFileError

    with pytest.raises(UnreadableFileError, match="cannot read PDF"):
        read_document(tmp_path / "bad.pdf", b"%PDF-1.4 garbage")
