"""What ``llm2vec-rag serve`` loads: the base model, named adapters over it, an index (all on the engine thread)."""
from __future__ import annotations

import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from llm2vec_rag.errors import LLM2VecError

from .engine import Served


@dataclass(frozen=True)
class ModelPlan:
    """The encoders to serve, as the command line describes them."""

    model: str
    name: str
    adapters: tuple[str, ...] = ()  # stacked on the base (like --adapter elsewhere)
    named_adapters: tuple[tuple[str, str], ...] = ()  # (served name, adapter dir): one more encoder each
    index_dir: str | None = None
    pooling_mode: str | None = None
    max_length: int | None = None
    dtype: str = "auto"
    device: str = "auto"
    compile: bool = False
    aliases: dict[str, str] = field(default_factory=dict)


def default_name(model: str) -> str:
    """The name clients send as ``model``: the model argument, or a path's last part (``.gguf`` dropped)."""
    text = os.fspath(model).rstrip("/")
    path = Path(text).expanduser()
    if path.exists():
        return path.stem if path.suffix == ".gguf" else path.name
    return text


def parse_adapter(value: str) -> tuple[str | None, str]:
    """``NAME=DIR`` serves DIR as model NAME; a bare ``DIR`` is stacked on the base."""
    if "=" in value and not Path(value).expanduser().exists():
        name, _, folder = value.partition("=")
        name = name.strip()
        if not name or "/" in name:
            raise LLM2VecError(f"--adapter {value!r}: give NAME=DIR (a NAME without '/') or an adapter folder")
        return name, folder
    return None, value


def plan_models(model: str, adapters: Sequence[str] = (), name: str | None = None, **options) -> ModelPlan:
    stacked, named = [], []
    served = name or default_name(model)
    seen = {served}
    for value in adapters:
        adapter_name, folder = parse_adapter(value)
        if not Path(folder).expanduser().is_dir():
            raise LLM2VecError(f"adapter folder not found: {folder}")
        if adapter_name is None:
            stacked.append(folder)
            continue
        if adapter_name in seen:
            raise LLM2VecError(f"two served models named {adapter_name!r}")
        seen.add(adapter_name)
        named.append((adapter_name, folder))
    aliases = {model: served} if model != served else {}
    return ModelPlan(model=model, name=served, adapters=tuple(stacked), named_adapters=tuple(named),
                     aliases=aliases, **options)


def loader(plan: ModelPlan, log: Callable[[str], None] = lambda m: None) -> Callable[[], Served]:
    """The function the engine thread runs at start-up."""

    def load() -> Served:
        from llm2vec_rag.encoder import LLM2Vec
        from llm2vec_rag.index.model import load_encoder

        common = dict(pooling_mode=plan.pooling_mode, max_length=plan.max_length, dtype=plan.dtype,
                      device=plan.device, compile=plan.compile)
        models = {plan.name: load_encoder(plan.model, list(plan.adapters), **common)}
        for adapter_name, folder in plan.named_adapters:
            log(f"loading adapter {adapter_name} ({folder})")
            models[adapter_name] = LLM2Vec.from_pretrained(plan.model, adapters=[*plan.adapters, folder],
                                                           merge_adapters=True, **common)
        served = Served(models=models, dtype=plan.dtype)
        if plan.index_dir is not None:
            served.index, served.index_model = open_index(plan.index_dir, models, plan.dtype, plan.device, log)
        return served

    return load


def open_index(folder: str, models: dict, dtype: str, device: str, log: Callable[[str], None]):
    """The index, sharing a served encoder when one has its fingerprint, else loading its own model now."""
    from llm2vec_rag.index import Index

    probe = Index.load(folder, log=log)
    want = probe.info.get("fingerprint")
    probe.close()
    for name, encoder in models.items():
        if str(encoder.fingerprint()) == want:
            return Index.load(folder, encoder=encoder, log=log), name
    log(f"the index at {folder} was built with another model ({probe.info.get('model')}); loading it for /v1/search")
    index = Index.load(folder, log=log, dtype=dtype, device=device)
    index.encoder  # noqa: B018 -- load now: a bad index model fails at start-up, not on the first search
    return index, None
