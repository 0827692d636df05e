"""LoRA adapters on top of a base model, thin over peft.

LLM2Vec stacks adapters: the MNTP adapter is merged into the weights, then
the SimCSE (or supervised) adapter is applied on top. We do the same for any
number of adapters: all but the last are merged; the last is merged only on
request (merging is faster to run, unmerged keeps it separable).
"""
from __future__ import annotations

import json
import os
from collections.abc import Sequence
from pathlib import Path

import torch

from .errors import ModelLoadError

ADAPTER_CONFIG = "adapter_config.json"


def check_adapter_dir(path: Path) -> None:
    if not path.is_dir():
        raise ModelLoadError(f"adapter not found: {path}")
    config = path / ADAPTER_CONFIG
    if not config.is_file():
        raise ModelLoadError(f"{path} is not a LoRA adapter (no {ADAPTER_CONFIG})")
    try:
        json.loads(config.read_text(encoding="utf-8"))
    except (ValueError, UnicodeDecodeError) as exc:
        raise ModelLoadError(f"corrupt adapter config {config}: {exc}") from None
    if not any(path.glob("adapter_model.*")):
        raise ModelLoadError(f"{path} has no adapter weights (adapter_model.safetensors)")


def apply_adapters(
    model: torch.nn.Module, adapters: Sequence[str | os.PathLike[str]], merge_last: bool = False
) -> torch.nn.Module:
    """Apply ``adapters`` in order; returns the (possibly peft-wrapped) model."""
    paths = [Path(a).expanduser() for a in adapters]
    for path in paths:
        check_adapter_dir(path)
    if not paths:
        return model
    from peft import PeftModel

    for i, path in enumerate(paths):
        try:
            wrapped = PeftModel.from_pretrained(model, str(path), is_trainable=False)
        except Exception as exc:  # safetensors/peft raise many kinds on bad files
            raise ModelLoadError(f"cannot load adapter {path}: {type(exc).__name__}: {exc}") from None
        last = i == len(paths) - 1
        model = wrapped if (last and not merge_last) else wrapped.merge_and_unload()
    return model


def adapter_free_view(path: Path) -> Path:
    """A directory of links to ``path``'s files minus its adapter, for loading the base weights beside it.

    Why: transformers 5 applies (unmerged) an adapter it finds beside a model's weights; we apply
    the adapter ourselves (merged, stacked before the user's), so transformers must not see it.
    Made once per source directory in the cache; a concurrent maker's copy is as good.
    """
    import hashlib
    import shutil
    import tempfile

    from .paths import cache_dir

    path = Path(path).resolve()
    files = sorted(p.name for p in path.iterdir() if p.is_file()
                   and p.name != ADAPTER_CONFIG and not p.name.startswith("adapter_model."))
    target = cache_dir() / "views" / f"{path.name}-{hashlib.sha256(str(path).encode()).hexdigest()[:12]}"
    if target.is_dir() and sorted(p.name for p in target.iterdir()) == files:
        return target
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{target.name}.", dir=target.parent))
    for name in files:
        (tmp / name).symlink_to(path / name)
    shutil.rmtree(target, ignore_errors=True)
    try:
        os.replace(tmp, target)
    except OSError:
        shutil.rmtree(tmp, ignore_errors=True)
    return target


def is_peft(model: torch.nn.Module) -> bool:
    return hasattr(model, "peft_config")


def base_state_dict(model: torch.nn.Module) -> dict[str, torch.Tensor]:
    """The base weights of a peft-wrapped model, without LoRA tensors, under the base model's names."""
    state = {}
    for key, value in model.state_dict().items():
        if "lora_" in key or "modules_to_save" in key:
            continue
        key = key.removeprefix("base_model.model.").replace(".base_layer.", ".")
        state[key] = value
    return state
