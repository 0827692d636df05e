"""The example scripts run as users run them: subprocesses, offline, from another working directory."""
from __future__ import annotations

import importlib.util
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

EXAMPLES = Path(__file__).resolve().parents[1] / "examples"
SCRIPTS = ["langchain_retrieval.py", "llama_index_retrieval.py"]


def run_example(script: str, *args: str, cwd: Path, cache: Path, timeout: int = 600) -> subprocess.CompletedProcess:
    env = {**os.environ, "LLM2VEC_RAG_CACHE": str(cache), "HF_HUB_OFFLINE": "1", "TOKENIZERS_PARALLELISM": "false"}
    return subprocess.run([sys.executable, str(EXAMPLES / script), *args], cwd=cwd, env=env,
                          capture_output=True, text=True, timeout=timeout)


@pytest.fixture
def small_docs(tmp_path) -> Path:
    folder = tmp_path / "notes"
    folder.mkdir()
    (folder / "guide.md").write_text("# Install\n\nRun setup.sh to install the toolkit.\n\n"
                                     "## Index\n\nUse the index command to search your documents.\n")
    (folder / "rivers.txt").write_text("Rivers carry sediment from mountains down to the sea.\n")
    return folder


def hits_per_question(stdout: str) -> dict[str, list[str]]:
    """{question: [hit lines]} from the scripts' output."""
    out: dict[str, list[str]] = {}
    question = None
    for line in stdout.splitlines():
        if line.startswith("Q: "):
            question = line[3:]
            out[question] = []
        elif question is not None and re.match(r"\s+\d+\. ", line):
            out[question].append(line.strip())
    return out


@pytest.mark.parametrize("script", SCRIPTS)
def test_example_runs_on_a_folder_with_the_tiny_model(script, small_docs, tiny_model_dir, tmp_path):
    result = run_example(script, str(small_docs), "--model", str(tiny_model_dir), "-k", "2",
                         "-q", "how do I install it?", "-q", "where do rivers go?", cwd=tmp_path, cache=tmp_path / "c")
    assert result.returncode == 0, result.stderr[-3000:]
    assert f"indexed 3 chunks from {small_docs}" in result.stdout and "(64-d)" in result.stdout
    hits = hits_per_question(result.stdout)
    assert list(hits) == ["how do I install it?", "where do rivers go?"]
    for lines in hits.values():
        assert len(lines) == 2 and all(("[guide.md" in h) or ("[rivers.txt]" in h) for h in lines)


def test_langchain_example_persists_and_reopens(small_docs, tiny_model_dir, tmp_path):
    args = [str(small_docs), "--model", str(tiny_model_dir), "-q", "install", "--persist", str(tmp_path / "kb")]
    first = run_example("langchain_retrieval.py", *args, cwd=tmp_path, cache=tmp_path / "c")
    assert first.returncode == 0, first.stderr[-3000:]
    second = run_example("langchain_retrieval.py", *args, cwd=tmp_path, cache=tmp_path / "c")
    assert second.returncode == 0, second.stderr[-3000:]
    assert "reopened 3 chunks" in second.stdout
    assert hits_per_question(first.stdout) == hits_per_question(second.stdout)


@pytest.mark.parametrize("script", SCRIPTS)
def test_example_reports_an_empty_folder(script, tiny_model_dir, tmp_path, capsys):
    """In-process (main(argv)), to spare a subprocess: an empty folder is a message and exit status 1."""
    from llama_index.core import Settings

    spec = importlib.util.spec_from_file_location(f"example_{script[:-3]}", EXAMPLES / script)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    (tmp_path / "empty").mkdir()
    saved = (Settings._embed_model, Settings._llm)
    try:
        status = module.main([str(tmp_path / "empty"), "--model", str(tiny_model_dir)])
    finally:
        Settings._embed_model, Settings._llm = saved
    assert status == 1 and "no readable documents" in capsys.readouterr().err


@pytest.mark.slow
def test_examples_with_the_default_model_over_examples_docs(real_cache, tmp_path):
    """As the README shows them: no arguments but a question, default model, default folder (examples/docs)."""
    question = "What is the query instruction for?"
    for script in SCRIPTS:
        result = run_example(script, "-q", question, cwd=tmp_path, cache=real_cache)
        assert result.returncode == 0, f"{script}: {result.stderr[-3000:]}"
        assert f"from {EXAMPLES / 'docs'} with smollm2-135m (576-d)" in result.stdout, result.stdout
        top = hits_per_question(result.stdout)[question]
        # the untrained 135M model is a weak ranker: the passage that answers must be in the top 3
        assert len(top) == 3 and any("[instructions.txt]" in hit for hit in top), (script, top)
