"""Faults of the machine, not of the input: full disk, corrupt pages, read-only index (issue 17 items 7, 8, 9).

Full-disk and read-only file systems are real: a small tmpfs mounted for the test (skipped where
mounting is not allowed); corrupt pages are real bytes overwritten in the database file. The
full-disk guarantees are also tested without root: SQLite's own "database or disk is full"
(``PRAGMA max_page_count``), and FAISS's write error for a full disk, at the store boundary.
"""
from __future__ import annotations

import os
import sqlite3
import subprocess
import uuid
from contextlib import contextmanager
from pathlib import Path

import pytest

from test_index import write_docs
from test_search_cli import invoke, one_line_error, runner  # noqa: F401  (runner is a fixture)


@pytest.fixture
def tmpfs(tmp_path):
    """A 2 MiB tmpfs, unmounted afterwards (skipped without the right to mount)."""
    point = tmp_path / f"fs-{uuid.uuid4().hex[:6]}"
    point.mkdir()
    mounted = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=2m", "tmpfs", str(point)], capture_output=True)
    if mounted.returncode != 0:
        pytest.skip("cannot mount a tmpfs here (needs root)")
    yield point
    subprocess.run(["umount", "-l", str(point)], capture_output=True)


def fill(folder: Path, leave: int = 0) -> Path:
    """Fill the file system of ``folder`` up to ``leave`` free bytes."""
    filler = folder / "filler.bin"
    with open(filler, "wb") as fh:
        try:
            while True:
                st = os.statvfs(folder)
                free = st.f_bavail * st.f_frsize
                if free <= leave:
                    break
                fh.write(b"\0" * min(65536, free - leave))
                fh.flush()
        except OSError:
            pass
    return filler


def test_full_disk_fresh_index_leaves_nothing(runner, tmp_path, tmpfs):
    docs = write_docs(tmp_path / "docs")
    fill(tmpfs)
    message = one_line_error(invoke(runner, "index", docs, "--index", tmpfs / "ix", "--model", "fake:", "--quiet"),
                             "no space")
    assert "Traceback" not in message
    assert not (tmpfs / "ix").exists()


def test_full_disk_during_an_update_keeps_the_index(runner, tmp_path, tmpfs):
    docs = write_docs(tmp_path / "docs")
    ix = tmpfs / "ix"
    assert invoke(runner, "index", docs, "--index", ix, "--model", "fake:", "--quiet").exit_code == 0
    big = docs / "big.txt"
    big.write_text("\n\n".join(f"Paragraph {i} about bread ovens and rivers number {i}." for i in range(3000)))
    filler = fill(tmpfs, leave=16 * 1024)
    for _ in range(2):  # every run while full: one line, no traceback
        one_line_error(invoke(runner, "index", docs, "--index", ix, "--quiet"), "no space")
    result = invoke(runner, "search", "bake bread", "--index", ix, "--k", "1")
    assert result.exit_code == 0 and "cooking.txt" in result.stdout, result.output
    filler.unlink()
    again = invoke(runner, "index", docs, "--index", ix, "--quiet", "--json")
    assert again.exit_code == 0, again.output
    assert '"added": 1' in again.stdout


@contextmanager
def database_full():
    """Meanwhile no SQLite database can grow (each new connection is capped at its current size):
    SQLite fails a write with its real "database or disk is full", as on a full disk."""
    real = sqlite3.connect

    def connect(*args, **kwargs):
        conn = real(*args, **kwargs)
        pages = conn.execute("PRAGMA page_count").fetchone()[0]
        conn.execute(f"PRAGMA max_page_count = {max(pages, 1)}")
        return conn

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(sqlite3, "connect", connect)
        yield


@contextmanager
def faiss_write_full():
    """Meanwhile ``faiss.write_index`` fails as it does on a full disk: part of the file written,
    then FAISS's RuntimeError (text as measured on a full tmpfs)."""
    faiss = pytest.importorskip("faiss")

    def write_index(index, path):
        with open(path, "wb") as fh:
            fh.write(b"\0" * 1000)
        raise RuntimeError(f"Error in void faiss::write_index(const Index*, IOWriter*, int) at "
                           f"/project/faiss/impl/index_write.cpp:499: Error: 'ret == (size * 4)' failed: write "
                           f"error in {path}: 1000 != 2560000 (No space left on device)")

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(faiss, "write_index", write_index)
        yield


def test_database_full_fresh_index_leaves_nothing(runner, tmp_path):
    docs = write_docs(tmp_path / "docs")
    with database_full():
        result = invoke(runner, "index", docs, "--index", tmp_path / "new" / "ix", "--model", "fake:", "--quiet")
    one_line_error(result, "no space")
    assert not (tmp_path / "new").exists()


@pytest.mark.parametrize("full", [database_full, faiss_write_full])
def test_disk_full_during_an_update_keeps_the_index(runner, tmp_path, full):
    docs, ix = write_docs(tmp_path / "docs"), tmp_path / "ix"
    assert invoke(runner, "index", docs, "--index", ix, "--model", "fake:", "--quiet").exit_code == 0
    (docs / "big.txt").write_text("\n\n".join(f"Paragraph {i} about bread ovens and rivers number {i}."
                                              for i in range(300)))
    with full():
        for _ in range(2):  # every run while full: one line, no traceback
            one_line_error(invoke(runner, "index", docs, "--index", ix, "--quiet"), "no space")
    assert not list(ix.glob("*.tmp"))
    result = invoke(runner, "search", "bake bread", "--index", ix, "--k", "1")
    assert result.exit_code == 0 and "cooking.txt" in result.stdout, result.output  # loadable, searchable
    again = invoke(runner, "index", docs, "--index", ix, "--quiet", "--json")  # space again: the work finishes
    assert again.exit_code == 0, again.output
    result = invoke(runner, "search", "paragraph 7 about bread ovens", "--index", ix, "--k", "1", "--json")
    assert result.exit_code == 0 and "big.txt" in result.stdout and not result.stderr, result.output


def test_read_only_index_is_searchable_and_says_read_only(runner, tmp_path, tmpfs):
    docs = write_docs(tmp_path / "docs")
    ix = tmpfs / "ix"
    assert invoke(runner, "index", docs, "--index", ix, "--model", "fake:", "--quiet").exit_code == 0
    assert subprocess.run(["mount", "-o", "remount,ro", str(tmpfs)], capture_output=True).returncode == 0
    result = invoke(runner, "search", "bake bread", "--index", ix, "--k", "2", "--json")
    assert result.exit_code == 0, result.output
    assert "cooking.txt" in result.stdout and "corrupt" not in result.stderr
    message = one_line_error(invoke(runner, "index", docs, "--index", ix, "--quiet"), "read-only")
    assert "corrupt" not in message and "--rebuild" not in message


def test_read_only_by_permissions(runner, tmp_path):
    if os.geteuid() == 0:
        pytest.skip("root ignores file permissions (the tmpfs test covers read-only as root)")
    docs = write_docs(tmp_path / "docs")
    ix = tmp_path / "ix"
    assert invoke(runner, "index", docs, "--index", ix, "--model", "fake:", "--quiet").exit_code == 0
    for path in [*ix.iterdir(), ix]:
        path.chmod(0o555 if path.is_dir() else 0o444)
    try:
        result = invoke(runner, "search", "bake bread", "--index", ix, "--k", "2")
        assert result.exit_code == 0 and "cooking.txt" in result.stdout
        one_line_error(invoke(runner, "index", docs, "--index", ix, "--quiet"), "read-only")
    finally:
        for path in [ix, *ix.iterdir()]:
            path.chmod(0o755 if path.is_dir() else 0o644)


def test_corrupt_pages_in_the_middle_give_one_line(runner, tmp_path):
    docs = tmp_path / "docs"
    docs.mkdir()
    for i in range(30):
        (docs / f"d{i}.md").write_text("\n\n".join(f"Doc {i} paragraph {p} " + "word " * 40 for p in range(12)))
    ix = tmp_path / "ix"
    assert invoke(runner, "index", docs, "--index", ix, "--model", "fake:", "--quiet").exit_code == 0
    meta = ix / "meta.sqlite"
    assert not Path(f"{meta}-wal").exists() or Path(f"{meta}-wal").stat().st_size == 0
    size = meta.stat().st_size
    assert size > 40 * 4096
    with open(meta, "r+b") as fh:  # garbage over a run of pages in the middle (chunk rows, not the header)
        for page in range(size // 4096 // 3, size // 4096 * 2 // 3, 2):
            fh.seek(page * 4096)
            fh.write(os.urandom(4096))
    (docs / "d0.md").write_text("changed text about something else entirely")
    failed = 0
    for args in (["search", "paragraph", "--index", ix, "--where", "*.md", "--k", "5"],
                 ["search", "paragraph", "--index", ix, "--k", "200"],
                 ["search", "paragraph", "--index", ix, "--where", "d1*", "--mode", "dense"],
                 ["index", docs, "--index", ix, "--quiet"]):
        result = invoke(runner, *args)
        print(args[0], result.exit_code, result.stderr.strip()[:300])
        if result.exit_code == 0:
            continue  # the damaged pages were not needed for this one
        one_line_error(result, "corrupt")
        failed += 1
    assert failed >= 2
    from fakes import FakeEncoder
    from llm2vec_rag import Index
    from llm2vec_rag.errors import IndexFormatError

    with Index.load(ix, FakeEncoder()) as index:  # the Python API: the same error type, with the path
        with pytest.raises(IndexFormatError, match=f"the index at {ix} is corrupt"):
            index.search("paragraph", k=200, mode="dense")


def test_zero_byte_meta_left_by_an_old_failed_create_is_no_index(runner, tmp_path):
    docs, ix = write_docs(tmp_path / "docs"), tmp_path / "ix"
    ix.mkdir()
    (ix / "meta.sqlite").write_bytes(b"")
    one_line_error(invoke(runner, "search", "bread", "--index", ix), "no index at")
    result = invoke(runner, "index", docs, "--index", ix, "--model", "fake:", "--quiet")
    assert result.exit_code == 0, result.output
