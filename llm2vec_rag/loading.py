"""Loading a model, in one visible order: resolve the name -> choose the engine -> base model and
tokenizer -> adapters. ``LLM2Vec.from_pretrained`` and the trainer both load through here."""
from __future__ import annotations

import json
import os
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from .errors import LLM2VecError, ModelLoadError, ModelNotFoundError
from .resolve import ResolvedModel, alternatives
from .runtime import quiet_transformers

if TYPE_CHECKING:  # pragma: no cover
    import torch


# transformers keywords the reference passes on to the model load, and that we pass on too
MODEL_KWARGS = frozenset({"trust_remote_code", "low_cpu_mem_usage", "use_safetensors", "quantization_config",
                          "force_download", "use_auth_token"})


def looks_like_model(value: Any) -> bool:
    """A second positional argument that is an adapter (the reference's order), not a pooling mode."""
    if isinstance(value, os.PathLike):
        return True
    return isinstance(value, str) and ("/" in value or os.sep in value or Path(value).expanduser().exists())


def pick_dtype(dtype: Any, torch_dtype: Any, reference_style: bool) -> Any:
    """``torch_dtype`` (the reference's name) or ``dtype``; a reference-style call defaults to float32 as 4.44 did."""
    if torch_dtype is not None:
        if dtype not in (None, "auto") and dtype != torch_dtype:
            raise LLM2VecError(f"dtype={dtype!r} and torch_dtype={torch_dtype!r} disagree; give one")
        return torch_dtype
    if reference_style and dtype in (None, "auto"):
        return "float32"
    return dtype


def pick_device(device: Any, device_map: Any) -> Any:
    """``device_map`` (the reference's name) as one device: "cuda", "cpu", "cuda:1", or "auto"."""
    if device_map is None:
        return device
    if isinstance(device_map, dict):
        raise LLM2VecError("device_map dicts (a model split over devices) are not supported; pass one device, "
                           "e.g. device_map='cuda' or device='cuda:1'")
    if str(device_map) in ("auto", "balanced", "balanced_low_0", "sequential"):
        device_map = "auto"
    if device not in (None, "auto") and str(device) != str(device_map):
        raise LLM2VecError(f"device={device!r} and device_map={device_map!r} disagree; give one")
    return device_map


def transformers_kwargs(hf_kwargs: dict[str, Any], attn_implementation: str | None) -> dict[str, Any]:
    """Keywords for transformers' model load; an unknown one is a TypeError, as in any Python call."""
    unknown = sorted(set(hf_kwargs) - MODEL_KWARGS)
    if unknown:
        raise TypeError(f"LLM2Vec.from_pretrained() got unexpected keyword arguments {unknown}; "
                        f"transformers options accepted: {', '.join(sorted(MODEL_KWARGS))}, attn_implementation, "
                        "revision, cache_dir, token, local_files_only")
    kwargs = dict(hf_kwargs)
    if "use_auth_token" in kwargs:
        kwargs["token"] = kwargs.pop("use_auth_token")
    if attn_implementation is not None and attn_implementation != "sdpa":
        kwargs["attn_implementation"] = attn_implementation
    return kwargs


GENERIC_TOKENIZERS = {"PreTrainedTokenizerFast", "TokenizersBackend"}


def load_tokenizer(source: str, light: bool = False) -> Any:
    """``AutoTokenizer``, except where the saved config names the generic fast class: then that class
    directly, which is what ``AutoTokenizer`` would build, without its ~1 s of resolving (start-up);
    with ``light``, the same ``tokenizers`` object without importing transformers at all."""
    config = Path(source) / "tokenizer_config.json"
    if config.is_file() and (Path(source) / "tokenizer.json").is_file():
        try:
            name = json.loads(config.read_text(encoding="utf-8")).get("tokenizer_class")
        except (OSError, ValueError):
            name = None
        if name in GENERIC_TOKENIZERS:
            if light:
                from .light_tokenizer import LightTokenizer

                return LightTokenizer(source)
            from transformers import PreTrainedTokenizerFast

            return PreTrainedTokenizerFast.from_pretrained(source)
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(source)


ENGINES = ("auto", "native", "transformers")


def choose_engine(engine: str, resolved: ResolvedModel, adapters: Sequence[Any]) -> str:
    """``native`` where it runs the checkpoint exactly and nothing needs transformers' modules, else ``transformers``."""
    if engine == "auto":
        engine = os.environ.get("LLM2VEC_RAG_ENGINE", "auto") or "auto"
    if engine not in ENGINES:
        raise LLM2VecError(f"unknown engine {engine!r}; choose one of: {', '.join(ENGINES)}")
    if engine == "transformers":
        return engine
    from .native import native_reason

    if resolved.kind == "hub":
        reason: str | None = "a Hub model (downloaded by transformers)"
    elif adapters:
        reason = "unmerged LoRA adapters (peft wraps transformers modules)"
    else:
        reason = native_reason(resolved.source)
    if reason is None:
        return "native"
    if engine == "native":
        raise LLM2VecError(f"the native engine cannot run {resolved.source}: {reason}; use engine='transformers'")
    return "transformers"


def load_base(resolved: ResolvedModel, dtype: torch.dtype, engine: str = "transformers",
               model_kwargs: dict[str, Any] | None = None) -> tuple[torch.nn.Module, Any]:
    """The bare transformer (no LM head) and its tokenizer, quiet about the head it drops.

    The tokenizer comes from ``resolved.tokenizer_source`` when set (a published ``-mntp``
    directory's own tokenizer, as the reference loads it), else from beside the weights.
    """
    tokenizer_source = resolved.tokenizer_source or resolved.source
    if engine == "native":
        from .native import load_native

        return load_native(resolved.source, dtype), load_tokenizer(tokenizer_source, light=True)
    from transformers import AutoModel

    kwargs = dict(model_kwargs or {})
    attn = kwargs.pop("attn_implementation", "sdpa")
    with quiet_transformers():
        try:
            tokenizer = load_tokenizer(tokenizer_source)
            try:
                model = AutoModel.from_pretrained(resolved.source, dtype=dtype, attn_implementation=attn, **kwargs)
            except ValueError as exc:
                if attn != "sdpa" or "scaled_dot_product_attention" not in str(exc):
                    raise
                model = AutoModel.from_pretrained(resolved.source, dtype=dtype, **kwargs)
        except OSError as exc:
            if resolved.kind == "hub":
                reason = str(exc).strip().splitlines()[0][:200]
                raise ModelNotFoundError(
                    f"cannot load {resolved.source!r} from the Hugging Face Hub ({reason}); "
                    f"offline, use one of: {alternatives()}"
                ) from None
            raise ModelLoadError(f"cannot load model from {resolved.source}: {exc}") from None
    return model, tokenizer
