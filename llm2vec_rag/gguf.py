"""GGUF files → a cached Hugging Face directory (safetensors).

Dequantizing a GGUF through transformers takes 20-60 s and the result refuses
``save_pretrained``; we rebuild a plain model from its config, copy the state
dict over and cache it, so every later load is a sub-second safetensors read.
"""
from __future__ import annotations

import functools
import hashlib
import importlib
import os
import sys
import shutil
import tempfile
from pathlib import Path

from .errors import ModelLoadError
from .paths import cache_dir
from .runtime import quiet_transformers

GGUF_MAGIC = b"GGUF"


def _cache_key(path: Path) -> str:
    st = path.stat()
    raw = f"{path.resolve()}|{st.st_size}|{st.st_mtime_ns}".encode()
    return hashlib.sha256(raw).hexdigest()[:16]


def cached_dir_for(path: Path) -> Path:
    return cache_dir() / "gguf" / f"{path.stem}-{_cache_key(path)}"


def is_converted(target: Path) -> bool:
    return (target / "config.json").is_file() and any(target.glob("*.safetensors"))


def check_gguf_header(path: Path) -> None:
    """Fail fast, with a clear message, on files that are not GGUF at all."""
    try:
        with open(path, "rb") as fh:
            magic = fh.read(4)
    except OSError as exc:
        raise ModelLoadError(f"cannot read GGUF file {path}: {exc.strerror or exc}") from None
    if magic != GGUF_MAGIC:
        raise ModelLoadError(f"{path} is not a GGUF file (bad magic bytes {magic!r})")


def gguf_to_hf_dir(path: str | os.PathLike[str]) -> Path:
    """Return a directory with config, safetensors weights and tokenizer for ``path``."""
    path = Path(path)
    if not path.is_file():
        raise ModelLoadError(f"GGUF file not found: {path}")
    target = cached_dir_for(path)
    if is_converted(target):
        return target
    check_gguf_header(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{target.name}.", dir=target.parent))
    try:
        _convert(path, tmp)
        try:
            os.replace(tmp, target)
        except OSError:
            # another process finished first: theirs is as good as ours
            if not is_converted(target):
                raise
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return target


def _convert(path: Path, out: Path) -> None:
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    print(f"llm2vec-rag: converting {path.name} to safetensors once (cached under {out.parent})",
          file=sys.stderr, flush=True)
    # transformers' GGUF reader uses plain tqdm, deaf to quiet_transformers: our one line says it all
    reader = importlib.import_module("transformers.modeling_gguf_pytorch_utils")
    reader_tqdm = getattr(reader, "tqdm", None)
    if reader_tqdm is not None:
        reader.tqdm = functools.partial(reader_tqdm, disable=True)
    try:
        with quiet_transformers():
            try:
                tokenizer = AutoTokenizer.from_pretrained(path.parent, gguf_file=path.name)
                quantized = AutoModelForCausalLM.from_pretrained(path.parent, gguf_file=path.name,
                                                                 dtype=torch.float32)
            except Exception as exc:  # gguf raises many kinds of errors on corrupt files
                raise ModelLoadError(f"cannot load GGUF file {path}: {type(exc).__name__}: {exc}") from None
            config = quantized.config
            if hasattr(config, "quantization_config"):
                del config.quantization_config  # the dequantized copy is a plain float model
            config._name_or_path = path.stem
            with torch.device("meta"):
                fresh = AutoModelForCausalLM.from_config(config, dtype=torch.float32)
            fresh.load_state_dict(quantized.state_dict(), assign=True, strict=False)
            fresh.tie_weights()
            fresh.save_pretrained(out, safe_serialization=True)
            tokenizer.save_pretrained(out)
    finally:
        if reader_tqdm is not None:
            reader.tqdm = reader_tqdm
