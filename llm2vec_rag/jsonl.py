"""Read JSON lines with errors that name the file and line, for every reader in the toolkit."""
from __future__ import annotations

import gzip
import io
import json
from collections.abc import Iterator
from pathlib import Path

from .errors import LLM2VecError


def open_text(path: Path) -> io.TextIOBase:
    """UTF-8 text (``.gz`` transparently); undecodable bytes are replaced, never fatal."""
    if path.suffix.lower() == ".gz":
        return io.TextIOWrapper(gzip.open(path, "rb"), encoding="utf-8", errors="replace")
    return open(path, encoding="utf-8", errors="replace")


def iter_jsonl(path: Path, error: type[LLM2VecError] = LLM2VecError) -> Iterator[tuple[int, dict]]:
    """Yield ``(line number, object)`` for every non-blank line; anything but a JSON object raises ``error``."""
    with open_text(path) as fh:
        for number, line in enumerate(fh, 1):
            if not line.strip():
                continue
            try:
                row = json.loads(line)
            except json.JSONDecodeError as exc:
                raise error(f"{path}:{number}: not valid JSON ({exc.msg})") from None
            if not isinstance(row, dict):
                raise error(f"{path}:{number}: expected a JSON object")
            yield number, row
