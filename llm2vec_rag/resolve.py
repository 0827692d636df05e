"""Name / directory / ``.gguf`` / Hub id → something ``from_pretrained`` can read.

One function, :func:`resolve_model`, so the encoder, the CLI and the index
all agree on what a model argument means.
"""
from __future__ import annotations

import dataclasses
import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

from .embedded import EMBEDDED
from .errors import ModelNotFoundError
from .gguf import gguf_to_hf_dir
from .hub import HubOptions, snapshot
from .paths import cache_dir

Kind = Literal["embedded", "gguf", "hf-dir", "hub", "llm2vec-dir", "st-dir"]

LLM2VEC_CONFIG = "llm2vec_config.json"  # the reference's settings file (ours too, format 1)
LLM2VEC_RAG_CONFIG = "llm2vec_rag.json"  # our settings, written by save() (format 2)
ADAPTER_CONFIG = "adapter_config.json"


@dataclass
class ResolvedModel:
    """Where the weights are and what kind of source they came from."""

    name: str  # what the user asked for, kept for fingerprints and messages
    kind: Kind
    source: str  # a local directory, or a Hub id for kind == "hub"
    adapters: list[Path] = field(default_factory=list)  # applied in order
    settings: dict = field(default_factory=dict)  # encoder settings found beside the weights
    # the model folder's own reference llm2vec_config.json: llm2vec 0.2.3 reads it only when no peft adapter is given
    reference_settings: dict = field(default_factory=dict)
    tokenizer_source: str | None = None  # where the tokenizer is, when not beside the weights
    name_or_path: str = ""  # what the reference reads as config._name_or_path (its chat templates key on it)


def alternatives() -> str:
    """The model names that work offline, for error messages."""
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
        raise ModelNotFoundError(f"empty model name; choose one of: {alternatives()}")
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
        raise ModelNotFoundError(f"{path} is a file but not a .gguf model; choose one of: {alternatives()}")
    if not _is_hub_id(text):
        raise ModelNotFoundError(f"unknown model {text!r}; choose one of: {alternatives()}, or a Hub id org/name")
    return ResolvedModel(name=text, kind="hub", source=text)


REFERENCE_KEYS = ("pooling_mode", "max_length", "doc_max_length", "skip_instruction")
WEIGHT_FILES = ("model.safetensors", "model.safetensors.index.json", "pytorch_model.bin", "pytorch_model.bin.index.json")
TOKENIZER_FILES = ("tokenizer.json", "tokenizer_config.json", "tokenizer.model")


def read_reference_settings(path: Path) -> dict:
    """The keys of a reference ``llm2vec_config.json`` in ``path`` (where ``llm2vec==0.2.3`` reads it); {} if none."""
    try:
        data = json.loads((Path(path) / LLM2VEC_CONFIG).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}
    return {k: data[k] for k in REFERENCE_KEYS if data.get(k) is not None} if isinstance(data, dict) else {}


def written_by_reference(path: str | os.PathLike[str]) -> bool:
    """A folder with llm2vec 0.2.3's ``llm2vec_config.json`` and none of our ``llm2vec_rag.json`` (save() writes both)."""
    return (Path(path) / LLM2VEC_CONFIG).is_file() and not (Path(path) / LLM2VEC_RAG_CONFIG).is_file()


def adapter_base(path: Path) -> str:
    """``base_model_name_or_path`` of the LoRA adapter in ``path``; "" when there is none."""
    try:
        return str(json.loads((Path(path) / ADAPTER_CONFIG).read_text(encoding="utf-8"))
                   .get("base_model_name_or_path") or "")
    except (OSError, ValueError, AttributeError):
        return ""


def _config_name_or_path(path: Path) -> str:
    try:
        return str(json.loads((path / "config.json").read_text(encoding="utf-8")).get("_name_or_path") or "")
    except (OSError, ValueError, AttributeError):
        return ""


def local_route(adapter_dir: str = "<mntp dir>") -> str:
    return (f"download the base model and pass it: LLM2Vec.from_pretrained('<base model dir>', "
            f"adapters=['{adapter_dir}', '<supervised or simcse adapter dir>'])")


def _resolve_dir(path: Path) -> ResolvedModel:
    if (path / LLM2VEC_RAG_CONFIG).is_file():
        try:
            settings = json.loads((path / LLM2VEC_RAG_CONFIG).read_text(encoding="utf-8"))
        except (OSError, ValueError) as exc:
            raise ModelNotFoundError(f"corrupt {path / LLM2VEC_RAG_CONFIG}: {exc}") from None
        adapters = [path / a for a in settings.get("adapters", [])]
        source = path
        if (path / ADAPTER_CONFIG).is_file():  # the adapter beside the weights: transformers must not apply it too
            from .adapters import adapter_free_view

            source = adapter_free_view(path)
        return ResolvedModel(name=settings.get("name", str(path)), kind="llm2vec-dir", source=str(source),
                             adapters=adapters, settings=settings, tokenizer_source=str(path))
    if (path / LLM2VEC_CONFIG).is_file():
        settings = json.loads((path / LLM2VEC_CONFIG).read_text(encoding="utf-8"))
        if "format_version" in settings or "adapters" in settings:  # written by our save()
            adapters = [path / a for a in settings.get("adapters", [])]
            return ResolvedModel(name=settings.get("name", str(path)), kind="llm2vec-dir",
                                 source=str(path), adapters=adapters, settings=settings)
    if (path / "modules.json").is_file() and not _names_our_st_module(path):
        return _resolve_sentence_transformers(path)
    settings = read_reference_settings(path)  # a reference layout: its llm2vec_config.json, if any
    if (path / ADAPTER_CONFIG).is_file():
        return _resolve_published(path, settings)
    if (path / "config.json").is_file():
        return ResolvedModel(name=str(path), kind="hf-dir", source=str(path), reference_settings=settings,
                             name_or_path=_config_name_or_path(path))
    raise ModelNotFoundError(
        f"{path} is not a model directory (no config.json, modules.json or {LLM2VEC_CONFIG})"
    )


def _resolve_published(path: Path, settings: dict) -> ResolvedModel:
    """A published LLM2Vec layout: a LoRA adapter (``-mntp``) whose base ``adapter_config.json`` names.

    The adapter is applied to that base (or to weights copied beside it), as the reference does.
    """
    try:
        adapter_cfg = json.loads((path / ADAPTER_CONFIG).read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise ModelNotFoundError(f"corrupt adapter config {path / ADAPTER_CONFIG}: {exc}") from None
    base_spec = str(adapter_cfg.get("base_model_name_or_path") or "")
    if any((path / f).is_file() for f in WEIGHT_FILES):  # base weights copied beside the adapter
        from .adapters import adapter_free_view

        base = ResolvedModel(name=str(path), kind="hf-dir", source=str(adapter_free_view(path)))
    elif not base_spec:
        raise ModelNotFoundError(f"{path} holds a LoRA adapter but no weights, and its {ADAPTER_CONFIG} names no "
                                 f"base_model_name_or_path; {local_route(str(path))}")
    else:
        try:
            base = resolve_model(base_spec)
        except ModelNotFoundError:
            raise ModelNotFoundError(
                f"{path} is a LoRA adapter whose base model {base_spec!r} (base_model_name_or_path in "
                f"{ADAPTER_CONFIG}) is not found; {local_route(str(path))}") from None
    has_tokenizer = any((path / f).is_file() for f in TOKENIZER_FILES)
    name_or_path = _config_name_or_path(path) if (path / "config.json").is_file() else base_spec
    return ResolvedModel(
        name=str(path), kind=base.kind, source=base.source, adapters=[*base.adapters, path],
        settings=base.settings, reference_settings=settings,  # the base folder's own file is not read
        tokenizer_source=str(path) if has_tokenizer else base.tokenizer_source,
        name_or_path=name_or_path or base.name_or_path,
    )


def fetch_hub(resolved: ResolvedModel, options: HubOptions = HubOptions()) -> ResolvedModel:
    """A Hub model made local (cache first, download only when online); its own adapters come first.

    ``name_or_path`` (the chat-template key) is what llm2vec 0.2.3 gets from transformers 4.44 for a
    Hub id: the adapter's ``base_model_name_or_path`` when the repository holds a LoRA adapter (4.44
    loads that base), else the Hub id; a local folder's ``config.json`` name is not used.
    """
    if resolved.kind != "hub":
        return resolved
    route = (f"offline, use one of: {alternatives()}; for a published LLM2Vec checkpoint, "
             + local_route())
    folder = snapshot(resolved.source, options, what="model", local_route=route)
    local = _resolve_dir(folder)
    if local.kind == "hub":  # a published adapter repository whose base is on the Hub too
        local = fetch_hub(local, HubOptions(cache_dir=options.cache_dir, token=options.token,
                                            local_files_only=options.local_files_only))
    if resolved.adapters:  # a local published folder whose base is this Hub id: the folder's name and file
        name_or_path, reference_settings = resolved.name_or_path, resolved.reference_settings
    else:
        name_or_path, reference_settings = adapter_base(folder) or resolved.source, local.reference_settings
    return dataclasses.replace(
        local, name=resolved.name, adapters=[*local.adapters, *resolved.adapters],
        settings={**local.settings, **resolved.settings}, reference_settings=reference_settings,
        tokenizer_source=resolved.tokenizer_source or local.tokenizer_source,
        name_or_path=name_or_path or local.name_or_path,
    )


def resolve_adapter(spec: str | os.PathLike[str], options: HubOptions = HubOptions()) -> Path:
    """An adapter directory, or a Hub id fetched like a model (``revision`` is the model's, not used here)."""
    path = Path(os.fspath(spec)).expanduser()
    if path.exists() or not _is_hub_id(os.fspath(spec)):
        return path
    return snapshot(os.fspath(spec), HubOptions(cache_dir=options.cache_dir, token=options.token,
                                                local_files_only=options.local_files_only),
                    what="adapter", local_route="download it and pass its directory in adapters=[...]")


def _names_our_st_module(path: Path) -> bool:
    """A ``modules.json`` written by save() for a decoder: the folder is ours, not a sentence-transformers layout."""
    try:
        modules = json.loads((path / "modules.json").read_text(encoding="utf-8"))
        return any(str(m.get("type", "")).startswith("llm2vec_rag.") for m in modules)
    except (OSError, ValueError, AttributeError, TypeError):
        return False


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
