"""Bad input is refused before anything is created or loaded, in one line (issue 17 items 4, 12, 13, 18, 19)."""
from __future__ import annotations

import sqlite3

import pytest

from test_index import write_docs
from test_search_cli import invoke, one_line_error, runner  # noqa: F401  (runner is a fixture)


def test_idmap_factory_is_refused_and_the_index_keeps_working(runner, tmp_path):
    docs, ix = write_docs(tmp_path / "docs"), tmp_path / "ix"
    assert invoke(runner, "index", docs, "--index", ix, "--model", "fake:", "--quiet").exit_code == 0
    one_line_error(invoke(runner, "index", docs, "--index", ix, "--index-type", "IDMap,Flat", "--quiet"), "IDMap")
    one_line_error(invoke(runner, "index", docs, "--index", ix, "--index-type", "IDMap2,HNSW32", "--quiet"), "IDMap")
    result = invoke(runner, "search", "bake bread", "--index", ix, "--k", "2")
    assert result.exit_code == 0 and "cooking.txt" in result.stdout


def test_factory_strings_are_checked_at_the_real_dimension(runner, tmp_path):
    docs = write_docs(tmp_path / "docs")
    # PQ36 needs a dimension divisible by 36: refused at 64-d before, fine at 576-d
    ok = invoke(runner, "index", docs, "--index", tmp_path / "a", "--model", "fake:576", "--index-type", "PQ36",
                "--quiet", "--json")
    assert ok.exit_code == 0, ok.output
    message = one_line_error(invoke(runner, "index", docs, "--index", tmp_path / "b", "--model", "fake:",
                                    "--index-type", "PQ36", "--quiet"), "PQ36", "64-d")
    assert ".cpp" not in message and "faiss::" not in message
    assert not (tmp_path / "b").exists()


@pytest.mark.parametrize("kind", ["bogus", "IVF", "HNSW32,Nope"])
def test_unknown_type_leaves_no_folder_and_no_cpp_locations(runner, tmp_path, kind):
    docs = write_docs(tmp_path / "docs")
    target = tmp_path / "new" / "ix"
    message = one_line_error(invoke(runner, "index", docs, "--index", target, "--model", "fake:", "--index-type", kind,
                                    "--quiet"), kind)
    assert ".cpp" not in message and "faiss::" not in message and " at /" not in message
    assert not (tmp_path / "new").exists()


@pytest.mark.parametrize("bad, fragment", [(["MISSING"], "does not exist"), (["EMPTY"], "no files to index"),
                                           (["--chunk-tokens", "0"], "--chunk-tokens"),
                                           (["--overlap", "-1"], "--overlap"), (["--overlap", "300"], "--overlap"),
                                           (["--ext", ""], "--ext"),
                                           (["--ext", ","], "--ext")])
def test_folder_and_options_are_checked_before_the_index_or_model(runner, tmp_path, bad, fragment):
    docs = write_docs(tmp_path / "docs")
    (tmp_path / "empty").mkdir()
    folder = {"MISSING": tmp_path / "nope", "EMPTY": tmp_path / "empty"}.get(bad[0], docs)
    options = bad if bad[0] not in ("MISSING", "EMPTY") else []
    # the model named does not exist: the folder/option error must come first
    one_line_error(invoke(runner, "index", folder, "--index", tmp_path / "ix", "--model", "no-such-model", *options,
                          "--quiet"), fragment)
    assert not (tmp_path / "ix").exists()


def test_overlap_alone_is_checked_against_the_recorded_chunk_size(runner, tmp_path):
    docs, ix = write_docs(tmp_path / "docs"), tmp_path / "ix"
    assert invoke(runner, "index", docs, "--index", ix, "--model", "fake:", "--chunk-tokens", "64",
                  "--quiet").exit_code == 0
    files = sorted(p.name for p in ix.iterdir())
    one_line_error(invoke(runner, "index", docs, "--index", ix, "--model", "no-such-model", "--overlap", "100",
                          "--quiet"), "--overlap", "63")  # before the model: 64-token chunks
    assert sorted(p.name for p in ix.iterdir()) == files
    wide = invoke(runner, "index", docs, "--index", tmp_path / "wide", "--model", "fake:", "--chunk-tokens", "512",
                  "--quiet")
    assert wide.exit_code == 0
    again = invoke(runner, "index", docs, "--index", tmp_path / "wide", "--overlap", "300", "--quiet")
    assert again.exit_code == 0, again.output  # 300 < 512, the recorded chunk size
    # a rebuild starts a new index, with 256-token chunks unless told otherwise
    one_line_error(invoke(runner, "index", docs, "--index", tmp_path / "wide", "--rebuild", "--model", "fake:32",
                          "--overlap", "300", "--quiet"), "--overlap", "255")
    assert not (tmp_path / "wide" / "rebuild-staging").exists()


def test_embed_checks_the_output_path_first(runner, tmp_path):
    src = tmp_path / "texts.txt"
    src.write_text("one\ntwo\n")
    message = one_line_error(invoke(runner, "embed", src, "-m", "no-such-model", "-o", tmp_path / "missing" / "x.npy"),
                             "missing")
    assert "does not exist" in message and ".tmp" not in message


def test_info_format_is_checked(runner, tmp_path):
    docs, ix = write_docs(tmp_path / "docs"), tmp_path / "ix"
    assert invoke(runner, "index", docs, "--index", ix, "--model", "fake:", "--quiet").exit_code == 0
    conn = sqlite3.connect(ix / "meta.sqlite")
    conn.execute("UPDATE info SET value = '99' WHERE key = 'format'")
    conn.commit()
    conn.close()
    one_line_error(invoke(runner, "search", "bread", "--index", ix), "format", "newer")
    one_line_error(invoke(runner, "index", docs, "--index", ix, "--quiet"), "format", "newer")


def test_index_type_of_an_existing_index_is_checked_before_the_model_loads(runner, tmp_path):
    docs, ix = write_docs(tmp_path / "docs"), tmp_path / "ix"
    assert invoke(runner, "index", docs, "--index", ix, "--model", "fake:", "--quiet").exit_code == 0
    one_line_error(invoke(runner, "index", docs, "--index", ix, "--model", "no-such-model", "--index-type", "bogus",
                          "--quiet"), "bogus")
    (ix / "rebuild-staging").mkdir()  # an unfinished rebuild survives a run that fails its checks
    one_line_error(invoke(runner, "index", docs, "--index", ix, "--index-type", "IDMap,Flat", "--quiet"), "IDMap")
    assert (ix / "rebuild-staging").exists()
