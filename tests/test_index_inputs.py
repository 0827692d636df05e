"""Odd inputs in the indexed folder and the query (issue 17 items 5, 6, 10, 11, 14, 15, 16, 17)."""
from __future__ import annotations

import io
import json
import os
import threading

import pytest
from click.testing import CliRunner

from fakes import FACTORY, FakeEncoder
from llm2vec_rag import Index
from llm2vec_rag.cli.main import cli
from llm2vec_rag.index import ingest
from llm2vec_rag.index.ingest import display_path, key_to_path, path_key
from llm2vec_rag.index.model import FACTORY_ENV
from llm2vec_rag.index.readers import read_html
from llm2vec_rag.index.sync import check_update
from test_index import write_docs


@pytest.fixture
def runner(monkeypatch):
    monkeypatch.setenv(FACTORY_ENV, FACTORY)
    return CliRunner()


def invoke(runner, *args):
    return runner.invoke(cli, [a if isinstance(a, (str, bytes)) else str(a) for a in args], catch_exceptions=False)


def build(docs, ix, **options):
    options.setdefault("progress", False)
    options.setdefault("log", lambda m: None)
    return Index.build(docs, path=ix, encoder=FakeEncoder(), **options)


def test_non_utf8_file_and_folder_names(tmp_path):
    docs = write_docs(tmp_path / "docs")
    raw_dir = os.path.join(os.fsencode(docs), b"caf\xe9")
    os.mkdir(raw_dir)
    with open(os.path.join(raw_dir, b"m\xfcsli.md"), "wb") as fh:
        fh.write(b"# Muesli\n\nOats soaked in milk overnight with apples.\n")
    ix = tmp_path / "ix"
    with build(docs, ix) as index:
        assert index.last_report.added == 6
        hit = index.search("oats soaked in milk", k=1)[0]
        assert "caf\ufffd/m\ufffdsli.md" in hit.source  # shown with replacement characters
    with build(docs, ix) as index:  # every later update works, and sees the file as unchanged
        assert index.last_report.unchanged == 6 and index.last_report.added == 0
    os.unlink(os.path.join(raw_dir, b"m\xfcsli.md"))
    with build(docs, ix) as index:
        assert index.last_report.removed == 1 and len(index.meta.conn.execute("SELECT * FROM files").fetchall()) == 5
    name = os.fsdecode(b"/x/caf\xe9/a\\xe9.md")
    assert key_to_path(path_key(name)) == name and path_key("/plain/na\u00efve.md") == "/plain/na\u00efve.md"
    assert display_path(name) == "/x/caf\ufffd/a\\xe9.md" and path_key(name) != path_key(display_path(name))


def test_unreadable_subfolder_is_skipped_not_fatal(tmp_path, monkeypatch):
    docs = write_docs(tmp_path / "docs")
    closed = docs / "closed"
    closed.mkdir()
    (closed / "secret.md").write_text("# Secret\n")
    if os.geteuid() != 0:
        closed.chmod(0)
    else:  # root reads everything: the kernel's answer for a 000 folder, given here
        real_scandir, real_stat = os.scandir, os.stat

        def scandir(path="."):
            if os.fspath(path) == str(closed):
                raise PermissionError(13, "Permission denied", str(path))
            return real_scandir(path)

        def stat(path, *args, **kwargs):
            if os.fspath(path).startswith(str(closed) + os.sep):
                raise PermissionError(13, "Permission denied", str(path))
            return real_stat(path, *args, **kwargs)

        monkeypatch.setattr(ingest.os, "scandir", scandir)
        monkeypatch.setattr(os, "stat", stat)
    try:
        found = check_update(docs, tmp_path / "ix")
        assert len(found.files) == 5 and found.skipped["unreadable"] == 1
        assert any("cannot list folder" in m for _, m in found.warnings)
    finally:
        closed.chmod(0o755)


def test_listed_folder_with_an_unreadable_gitignore(tmp_path):
    docs = write_docs(tmp_path / "docs")
    (docs / "notes" / "skipped.log.md").write_text("# Log\n")
    ignore = docs / "notes" / ".gitignore"
    if os.geteuid() != 0:
        ignore.write_text("*.log.md\n")
        ignore.chmod(0)
    else:  # root reads any file: a .gitignore that is a folder is listed but cannot be read either
        ignore.mkdir()
    try:
        found = check_update(docs, tmp_path / "ix")
    finally:
        if ignore.is_file():
            ignore.chmod(0o644)
    assert any(c.rel == "notes/skipped.log.md" for c in found.files) and len(found.files) == 6  # rules not applied
    assert [(p, m) for p, m in found.warnings if p == str(ignore) and m.startswith("cannot read")], found.warnings


def test_query_with_undecodable_bytes(runner, tmp_path):
    docs, ix = write_docs(tmp_path / "docs"), tmp_path / "ix"
    assert invoke(runner, "index", docs, "--index", ix, "--model", "fake:", "--quiet").exit_code == 0
    query = os.fsdecode(b"bake bread \xff\xfe oven")  # what Python makes of such argv bytes
    with Index.load(ix, FakeEncoder()) as index:
        assert index.search(query, k=1)[0].source.endswith("cooking.txt")
    result = invoke(runner, "search", query, "--index", ix, "--k", "1", "--json")
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout.splitlines()[0])["source"].endswith("cooking.txt")


def test_query_with_undecodable_bytes_real_tokenizer(tmp_path, tiny_model_dir):
    from llm2vec_rag import LLM2Vec

    encoder = LLM2Vec.from_pretrained(str(tiny_model_dir), dtype="float32")
    docs = write_docs(tmp_path / "docs")
    with Index.build(docs, path=tmp_path / "ix", encoder=encoder, progress=False, log=lambda m: None) as index:
        assert len(index.search(os.fsdecode(b"bread \xff\xfe oven"), k=2)) == 2


@pytest.mark.timeout(60)
def test_fifo_swapped_in_after_the_walk_does_not_block(tmp_path, monkeypatch):
    from llm2vec_rag.index import sync

    docs, ix = write_docs(tmp_path / "docs"), tmp_path / "ix"
    target = docs / "notes" / "cooking.txt"
    real_walk = sync.walk

    def walk_then_swap(*args, **kwargs):  # the file becomes a FIFO between the walk and the read
        found = real_walk(*args, **kwargs)
        if target.is_file():
            target.unlink()
            os.mkfifo(target)
        return found

    monkeypatch.setattr(sync, "walk", walk_then_swap)
    done, failed = [], []

    def run():
        try:
            done.append(build(docs, ix))
        except BaseException as exc:  # noqa: BLE001 - reported below
            failed.append(exc)

    worker = threading.Thread(target=run, daemon=True)
    worker.start()
    worker.join(30)
    if worker.is_alive():  # unblock the reader so the test process can end, then fail
        with open(target, "wb") as fh:
            fh.write(b"x")
        pytest.fail("the indexer blocked on a FIFO")
    assert not failed, failed
    with done[0] as index:
        assert index.last_report.added == 4 and index.last_report.skipped_reasons["unsupported"] >= 1


def test_symlinks_out_of_the_folder_are_not_followed(runner, tmp_path):
    docs = write_docs(tmp_path / "docs")
    outside = tmp_path / "private"
    outside.mkdir()
    (outside / "passwd.txt").write_text("root:x:0:0:secret password line for bread ovens")
    (docs / "leak.txt").symlink_to(outside / "passwd.txt")
    (docs / "leakdir").symlink_to(outside)
    (docs / "inside.md").symlink_to(docs / "guide" / "install.md")  # stays inside: followed
    ix = tmp_path / "ix"
    result = invoke(runner, "index", docs, "--index", ix, "--model", "fake:", "--quiet", "--json")
    report = json.loads(result.stdout)
    assert report["added"] == 6 and report["skipped_reasons"]["symlink_outside"] == 2
    with Index.load(ix, FakeEncoder()) as index:
        assert not any("password" in h.text for h in index.search("secret password", k=10))
    followed = invoke(runner, "index", docs, "--index", ix, "--quiet", "--json", "--follow-symlinks")
    assert json.loads(followed.stdout)["added"] == 2


def test_pypdf_messages_become_per_file_warnings(runner, tmp_path, capfd):
    pypdf = pytest.importorskip("pypdf")
    docs = tmp_path / "docs"
    docs.mkdir()
    writer = pypdf.PdfWriter()
    writer.add_blank_page(100, 100)
    buf = io.BytesIO()
    writer.write(buf)
    (docs / "broken.pdf").write_bytes(b"junk\n" + buf.getvalue())  # invalid header, bad startxref
    (docs / "a.txt").write_text("bread and ovens")
    ix = tmp_path / "ix"
    result = invoke(runner, "index", docs, "--index", ix, "--model", "fake:", "--quiet", "--json")
    assert result.exit_code == 0
    captured = capfd.readouterr()
    assert "invalid pdf header" not in captured.err and "invalid pdf header" not in result.stderr  # not leaked
    warnings = json.loads(result.stdout)["warnings"]
    assert any("broken.pdf" in w and "invalid pdf header" in w for w in warnings)
    loud = invoke(runner, "index", docs, "--index", tmp_path / "ix2", "--model", "fake:", "--json")
    lines = [line for line in loud.stderr.splitlines() if "invalid pdf header" in line]
    assert lines and all("broken.pdf" in line for line in lines)


@pytest.mark.parametrize("html, hidden", [
    ("<p>visible</p><!-- hidden <script>evil()</script> still a comment", ["hidden", "evil", "comment"]),
    ("<p>a</p><scr<script>ipt>alert(1)</script><p>b</p>", ["ipt>", "alert"]),
    ("<p>x</p><script>if (a<b) alert(2)</script><p>y</p>", ["alert"]),
    ("<p>tail</p><div class='x", ["<div", "class"]),
])
def test_html_hidden_text_stays_hidden(html, hidden):
    text = read_html(html).text
    for fragment in hidden:
        assert fragment not in text, text
    assert read_html("<p>a &lt; b and c > d</p>").text.strip() == "a < b and c > d"


def test_warnings_stand_on_their_own_lines(runner, tmp_path):
    docs = write_docs(tmp_path / "docs")
    for i in range(5):
        (docs / f"bin{i}.txt").write_bytes(b"\x00\x01binary" * 10)
    result = invoke(runner, "index", docs, "--index", tmp_path / "ix", "--model", "fake:")
    assert result.exit_code == 0
    err = result.stderr.replace("\r", "\n")
    lines = [line for line in err.split("\n") if "warning:" in line]
    assert len(lines) == 5 and all(line.startswith("warning:") for line in lines), result.stderr


def test_index_notes_stand_on_their_own_lines(runner, tmp_path):
    docs = write_docs(tmp_path / "docs")
    result = invoke(runner, "index", docs, "--index", tmp_path / "ix", "--model", "fake:", "--index-type", "ivf-pq")
    assert result.exit_code == 0, result.output
    lines = [line for line in result.stderr.replace("\r", "\n").split("\n") if "needs about" in line]
    assert lines and all(line.startswith("note: IVF") for line in lines), result.stderr  # the FAISS note, not glued
    notes: list[str] = []
    with Index.build(docs, path=tmp_path / "ix2", encoder=FakeEncoder(), index_type="ivf-pq", log=notes.append) as ix:
        assert ix.log == notes.append and any("needs about" in n for n in notes)  # the bar's writer is gone again
