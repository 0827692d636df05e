"""Name / directory / ``.gguf`` / Hub id → something ``from_pretrained`` can read.

One function, :func:`resolve_model`, so the encoder, the CLI and the index
all agree on what a model argument means.
"""
from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

from .embedded import EMBEDDED
from .errors import ModelNotFoundError
from .gguf import gguf_to_hf_dir
from .runtime import cache_dir

Kind = Literal["embedded", "gguf", "hf-dir", "hub", "llm2vec-dir", "st-dir"]

LLM2VEC_CONFIG = "llm2vec_config.json"


@dataclass
class ResolvedModel:
    """Where the weights are and what kind of source they came from."""

    name: str  # what the user asked for, kept for fingerprints and messages
    kind: Kind
    source: str  # a local directory, or a Hub id for kind == "hub"
    adapters: list[Path] = field(default_factory=list)  # applied in order
    settings: dict = field(default_factory=dict)  # encoder settings found beside the weights


def _alternatives() -> str:
    return ", ".join(EMBEDDED) + ", a .gguf file, or a local model directory"


def _is_hub_id(spec: str) -> bool:
    """``org/name``: one slash, two non-empty parts, not a relative or absolute path."""
    parts = spec.split("/")
    return len(parts) == 2 and all(parts) and not spec.startswith((".", "~"))


def resolve_model(spec: str | os.PathLike[str]) -> ResolvedModel:
    """Resolve ``spec`` to local weights (converting GGUF once), or a Hub id.

    >>> resolve_model("smollm2-135m").kind
    'embedded'
    """
    text = os.fspath(spec)
    if not text.strip():
        raise ModelNotFoundError(f"empty model name; choose one of: {_alternatives()}")
    key = text.strip().lower()
    if key in EMBEDDED:
        entry = EMBEDDED[key]
        gguf = entry.gguf_path(cache_dir() / "gguf")
        pkg = entry.package_dir()
        return ResolvedModel(
            name=entry.name,
            kind="embedded",
            source=str(gguf_to_hf_dir(gguf)),
            adapters=[pkg / a for a in entry.adapters],
        )
    path = Path(text).expanduser()
    if path.suffix.lower() == ".gguf":
        if not path.is_file():
            raise ModelNotFoundError(f"GGUF file not found: {path}")
        return ResolvedModel(name=str(path), kind="gguf", source=str(gguf_to_hf_dir(path)))
    if path.is_dir():
        return _resolve_dir(path)
    if path.exists():
        raise ModelNotFoundError(f"{path} is a file but not a .gguf model; choose one of: {_alternatives()}")
    if not _is_hub_id(text):
        raise ModelNotFoundError(f"unknown model {text!r}; choose one of: {_alternatives()}, or a Hub id org/name")
    return ResolvedModel(name=text, kind="hub", source=text)


def _resolve_dir(path: Path) -> ResolvedModel:
    if (path / LLM2VEC_CONFIG).is_file():
        settings = json.loads((path / LLM2VEC_CONFIG).read_text(encoding="utf-8"))
        adapters = [path / a for a in settings.get("adapters", [])]
        return ResolvedModel(name=settings.get("name", str(path)), kind="llm2vec-dir",
                             source=str(path), adapters=adapters, settings=settings)
    if (path / "modules.json").is_file():
        return _resolve_sentence_transformers(path)
    if (path / "config.json").is_file():
        return ResolvedModel(name=str(path), kind="hf-dir", source=str(path))
    raise ModelNotFoundError(
        f"{path} is not a model directory (no config.json, modules.json or {LLM2VEC_CONFIG})"
    )


def _resolve_sentence_transformers(path: Path) -> ResolvedModel:
    """Read a sentence-transformers layout: Transformer → Pooling (→ Normalize)."""
    modules = json.loads((path / "modules.json").read_text(encoding="utf-8"))
    settings: dict = {"normalize": False, "include_special_tokens": True}
    transformer_dir = path
    for module in modules:
        kind = module.get("type", "")
        sub = path / module.get("path", "")
        if kind.endswith("Transformer"):
            transformer_dir = sub
            cfg = sub / "sentence_bert_config.json"
            if not cfg.is_file():
                cfg = path / "sentence_bert_config.json"
            if cfg.is_file():
                st_cfg = json.loads(cfg.read_text(encoding="utf-8"))
                if st_cfg.get("max_seq_length"):
                    settings["max_length"] = int(st_cfg["max_seq_length"])
        elif kind.endswith("Pooling"):
            pooling = json.loads((sub / "config.json").read_text(encoding="utf-8"))
            settings["pooling_mode"] = _st_pooling_mode(pooling)
            settings["include_special_tokens"] = True
        elif kind.endswith("Normalize"):
            settings["normalize"] = True
    prompts_file = path / "config_sentence_transformers.json"
    if prompts_file.is_file():
        prompts = json.loads(prompts_file.read_text(encoding="utf-8")).get("prompts") or {}
        if prompts.get("query"):
            settings["query_instruction"] = prompts["query"].strip()
    if not (transformer_dir / "config.json").is_file():
        raise ModelNotFoundError(f"{path}: sentence-transformers layout without a Transformer config.json")
    return ResolvedModel(name=str(path), kind="st-dir", source=str(transformer_dir), settings=settings)


def _st_pooling_mode(cfg: dict) -> str:
    if cfg.get("pooling_mode_mean_tokens"):
        return "mean"
    if cfg.get("pooling_mode_weightedmean_tokens"):
        return "weighted_mean"
    if cfg.get("pooling_mode_lasttoken"):
        return "last_token"
    if cfg.get("pooling_mode_cls_token"):
        return "bos_token"
    return "mean"
