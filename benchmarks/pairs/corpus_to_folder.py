#!/usr/bin/env python
"""Write a BEIR corpus as a folder of Markdown files (``# title`` then the text), one per document, so that
``llm2vec-rag train weak`` (and ``index``) read it as they would read a user's documents. Labels (queries,
qrels) are not touched. Usage: python benchmarks/pairs/corpus_to_folder.py ../shared/data/scifact runs/scifact-folder
"""
from __future__ import annotations

import json
import re
import sys
from pathlib import Path


def main(argv: list[str]) -> int:
    if len(argv) != 2:
        print(__doc__.strip().splitlines()[-1], file=sys.stderr)
        return 2
    corpus, out = Path(argv[0]) / "corpus.jsonl", Path(argv[1])
    out.mkdir(parents=True, exist_ok=True)
    n = 0
    with open(corpus, encoding="utf-8") as fh:
        for line in fh:
            if not line.strip():
                continue
            row = json.loads(line)
            name = re.sub(r"[^A-Za-z0-9_-]+", "_", str(row["_id"]))
            title = (row.get("title") or "").strip()
            text = (row.get("text") or "").strip()
            body = f"# {title}\n\n{text}\n" if title else f"{text}\n"
            path = out / f"{name}.md"
            if not path.is_file() or path.read_text(encoding="utf-8") != body:
                path.write_text(body, encoding="utf-8")
            n += 1
    print(f"{n} documents in {out}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
