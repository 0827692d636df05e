"""Switch a decoder's attention between causal and bidirectional.

One mechanism for every family: transformers 5 builds a bidirectional mask
when ``config.is_causal`` is False, but SDPA still applies its own causal
flag when no mask is materialised (batch size 1, no padding): the silent
fallback that plagues the reference implementation. So we flip both, the
config and every attention module's ``is_causal``, and prove it with
:func:`attention_report`. A family missing from the table is an error, never
silently causal.
"""
from __future__ import annotations

import torch

from .errors import BidirectionalCheckError, UnsupportedModelError
from .families import ENCODER_MODEL_TYPES, FAMILIES, Family  # noqa: F401  (Family: re-exported)


# per-family facts live in one table (families.py); these names are kept for callers
NATIVE_BIDIRECTIONAL = ENCODER_MODEL_TYPES


def _configs(model: torch.nn.Module) -> list:
    config = model.config
    found = [config]
    text_config = getattr(config, "text_config", None)
    if text_config is not None and text_config is not config:
        found.append(text_config)
    return found


def model_type(model: torch.nn.Module) -> str:
    return str(getattr(model.config, "model_type", "unknown"))


def is_native_bidirectional(model: torch.nn.Module) -> bool:
    return model_type(model) in NATIVE_BIDIRECTIONAL


def set_bidirectional(model: torch.nn.Module, enabled: bool = True) -> None:
    """Make ``model`` attend bidirectionally (``enabled``) or causally.

    >>> set_bidirectional(model)          # doctest: +SKIP
    >>> attention_report(model)["batch1"]  # doctest: +SKIP
    True
    """
    mtype = model_type(model)
    if mtype in NATIVE_BIDIRECTIONAL:
        if not enabled:
            raise UnsupportedModelError(f"{mtype} is an encoder and always bidirectional; it cannot be made causal")
        return
    family = FAMILIES.get(mtype)
    if family is None:
        raise UnsupportedModelError(
            f"bidirectional attention is not supported for model_type {mtype!r}; "
            f"supported: {', '.join(sorted(FAMILIES))} (or pass enable_bidirectional=False)"
        )
    for config in _configs(model):
        config.is_causal = not enabled
        if family.bidirectional_flag:
            setattr(config, family.bidirectional_flag, enabled)
    switched = 0
    for module in model.modules():
        if isinstance(getattr(module, "is_causal", None), bool) and module is not model:
            module.is_causal = not enabled
            switched += 1
    if switched == 0:
        raise UnsupportedModelError(f"found no attention module with an is_causal switch in {mtype!r}")


def clear_bidirectional(config) -> None:
    """Remove our switches from a config before it is saved, so a plain reload is causal and consistent."""
    for cfg in [config, getattr(config, "text_config", None)]:
        if cfg is None:
            continue
        if hasattr(cfg, "is_causal"):
            try:
                delattr(cfg, "is_causal")
            except AttributeError:
                cfg.is_causal = True


def _last_hidden(model: torch.nn.Module, ids: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    positions = (mask.cumsum(-1) - 1).clamp(min=0)
    out = model(input_ids=ids, attention_mask=mask, position_ids=positions, output_hidden_states=True)
    hidden = getattr(out, "last_hidden_state", None)
    return hidden if hidden is not None else out.hidden_states[-1]


@torch.inference_mode()
def attention_report(model: torch.nn.Module, pad_token_id: int = 0) -> dict[str, bool]:
    """Does the first token see a change in the last one? At batch size 1 and with left padding.

    Cheap (two forward passes on a handful of tokens), so users can call it on
    any model they load.
    """
    device = next(model.parameters()).device
    vocab = int(getattr(model.config, "vocab_size", None) or model.get_input_embeddings().num_embeddings)
    base = [(7 * i + 11) % vocab for i in range(1, 6)]
    changed = base[:-1] + [(base[-1] + 97) % vocab]
    longer = [(13 * i + 5) % vocab for i in range(1, 9)]

    def first_token(seqs: list[list[int]], row: int) -> torch.Tensor:
        width = max(len(s) for s in seqs)
        ids = torch.full((len(seqs), width), pad_token_id, dtype=torch.long)
        mask = torch.zeros((len(seqs), width), dtype=torch.long)
        for i, s in enumerate(seqs):
            ids[i, width - len(s):] = torch.tensor(s)
            mask[i, width - len(s):] = 1
        hidden = _last_hidden(model, ids.to(device), mask.to(device))
        return hidden[row, width - len(seqs[row])].float()

    def differs(a: torch.Tensor, b: torch.Tensor) -> bool:
        return bool((a - b).abs().max() > 1e-5 * (1.0 + a.abs().max()))

    return {
        "batch1": differs(first_token([base], 0), first_token([changed], 0)),
        "padded": differs(first_token([base, longer], 0), first_token([changed, longer], 0)),
    }


def check_attention(model: torch.nn.Module, bidirectional: bool, pad_token_id: int = 0) -> dict[str, bool]:
    """Raise :class:`BidirectionalCheckError` unless attention behaves as configured."""
    report = attention_report(model, pad_token_id)
    want = "bidirectional" if bidirectional else "causal"
    wrong = [k for k, seen in report.items() if seen != bidirectional]
    if wrong:
        raise BidirectionalCheckError(
            f"{model_type(model)}: attention is not {want} ({', '.join(wrong)}): report {report}"
        )
    return report
