"""The two searches a new user tries first, in every mode, through the real CLI and the default model.

1. The README's query over ``examples/docs``: where does ``fine-tuning.md`` rank?
2. A folder of 300 SciFact abstracts (``4983.md`` and the first 299 others, ``# title`` + text):
   where does ``4983.md`` rank for "microstructural development of newborn white matter"?

    python benchmarks/hybrid_examples.py          # writes benchmarks/results/hybrid_examples.json
"""
from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
DATA = Path(os.environ.get("LLM2VEC_RAG_DATA", REPO.parent / "shared" / "data")).resolve()
CLI = [str(Path(sys.executable).parent / "llm2vec-rag")]


def cli(*args: str) -> str:
    return subprocess.run([*CLI, *args], check=True, capture_output=True, text=True).stdout


def ranks(index: Path, query: str, wanted: str) -> dict:
    out = {}
    for mode in ("hybrid", "dense", "lexical"):
        rows = [json.loads(line) for line in cli("search", query, "--index", str(index), "--mode", mode, "--k", "20",
                                                 "--json", "--quiet").splitlines()]
        files = list(dict.fromkeys(Path(r["source"]).name for r in rows))  # first chunk of each file
        out[mode] = files.index(wanted) + 1 if wanted in files else None
    return out


def abstracts_folder(folder: Path, n: int = 300, must: str = "4983") -> None:
    folder.mkdir(parents=True, exist_ok=True)
    rows = [json.loads(line) for line in (DATA / "scifact" / "corpus.jsonl").open(encoding="utf-8")]
    chosen = [r for r in rows if r["_id"] == must] + [r for r in rows if r["_id"] != must][: n - 1]
    for r in chosen:
        (folder / f"{r['_id']}.md").write_text(f"# {r.get('title', '')}\n\n{r.get('text', '')}\n", encoding="utf-8")


def main() -> None:
    result = {"command": "python benchmarks/hybrid_examples.py", "model": "smollm2-135m (default)"}
    with tempfile.TemporaryDirectory() as tmp:
        tmp_path = Path(tmp)
        cli("index", str(REPO / "examples" / "docs"), "--index", str(tmp_path / "ex"), "--quiet")
        query = "how do I fine-tune on my own documents?"
        result["readme_query"] = {"query": query, "wanted": "fine-tuning.md",
                                  "rank_by_mode": ranks(tmp_path / "ex", query, "fine-tuning.md")}
        abstracts_folder(tmp_path / "abstracts")
        cli("index", str(tmp_path / "abstracts"), "--index", str(tmp_path / "ab"), "--quiet")
        query = "microstructural development of newborn white matter"
        result["scifact_300"] = {"query": query, "wanted": "4983.md",
                                 "rank_by_mode": ranks(tmp_path / "ab", query, "4983.md")}
    out = REPO / "benchmarks" / "results" / "hybrid_examples.json"
    out.write_text(json.dumps(result, indent=1) + "\n", encoding="utf-8")
    print(json.dumps(result, indent=1))


if __name__ == "__main__":
    main()
