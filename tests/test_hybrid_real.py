"""The searches a new user tries first, with the real default model, through the CLI, in the default mode.

Slow (the real SmolLM2 embeds every chunk), but it is the issue's acceptance check: the README's
query finds ``fine-tuning.md`` in the top 3 over ``examples/docs``. The issue's other example (300
SciFact abstracts, ``4983.md`` first) embeds 542 chunks, 169 s of CPU time (one thread): too slow for
the test suite, so ``benchmarks/hybrid_examples.py`` checks it.
"""
from __future__ import annotations

import json
from pathlib import Path

import pytest
from click.testing import CliRunner

from llm2vec_rag.cli.main import cli

pytestmark = pytest.mark.slow

REPO = Path(__file__).resolve().parents[1]


def file_ranks(runner: CliRunner, index: Path, query: str) -> list[str]:
    """The files of ``search``'s top 20 (default mode), best first, each once."""
    res = runner.invoke(cli, ["search", query, "--index", str(index), "--k", "20", "--json", "--quiet"])
    assert res.exit_code == 0, res.output
    rows = [json.loads(line) for line in res.stdout.splitlines()]
    assert rows and all(r["mode"] == "hybrid" for r in rows)
    return list(dict.fromkeys(Path(r["source"]).name for r in rows))


def test_readme_query_finds_fine_tuning_in_the_top_3(tmp_path):
    runner = CliRunner()
    res = runner.invoke(cli, ["index", str(REPO / "examples" / "docs"), "--index", str(tmp_path / "ix"), "--quiet"])
    assert res.exit_code == 0, res.output
    files = file_ranks(runner, tmp_path / "ix", "how do I fine-tune on my own documents?")
    assert "fine-tuning.md" in files[:3], files
