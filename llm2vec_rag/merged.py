"""Embedded models that ship LLM2Vec adapters load as one merged, cached model.

Applying LoRA adapters on every load costs seconds (importing peft, wrapping,
merging); the shipped adapters never change, so they are merged once (in
float32, so every later load sees the same weights whatever its dtype) and
cached beside the converted GGUF. Later loads read plain safetensors.
"""
from __future__ import annotations

import hashlib
import os
import shutil
import tempfile
import warnings
from collections.abc import Sequence
from pathlib import Path

from .gguf import is_converted
from .paths import cache_dir
from .runtime import quiet_transformers


def _key(base: Path, adapters: Sequence[Path]) -> str:
    h = hashlib.sha256(str(Path(base).resolve()).encode())
    for a in adapters:
        for f in sorted(Path(a).glob("adapter_*")):
            st = f.stat()
            h.update(f"|{f.resolve()}|{st.st_size}|{st.st_mtime_ns}".encode())
    return h.hexdigest()[:16]


def merged_dir(name: str, base: str | os.PathLike[str], adapters: Sequence[Path]) -> Path:
    """A directory holding ``base`` with ``adapters`` merged in, made once (atomically) and cached."""
    target = cache_dir() / "merged" / f"{name}-{_key(Path(base), adapters)}"
    if is_converted(target):
        return target
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{target.name}.", dir=target.parent))
    try:
        _merge(Path(base), adapters, tmp)
        try:
            os.replace(tmp, target)
        except OSError:
            if not is_converted(target):  # another process finished first: theirs is as good
                raise
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return target


def _merge(base: Path, adapters: Sequence[Path], out: Path) -> None:
    import torch
    from transformers import AutoModel, AutoTokenizer

    from .adapters import apply_adapters

    # a one-off cache build: no library bars or deprecation noise
    with quiet_transformers(), warnings.catch_warnings():
        warnings.simplefilter("ignore", FutureWarning)
        tokenizer = AutoTokenizer.from_pretrained(base)
        model = AutoModel.from_pretrained(base, dtype=torch.float32)
        model = apply_adapters(model, list(adapters), merge_last=True)
        model.save_pretrained(out, safe_serialization=True)
        tokenizer.save_pretrained(out)
