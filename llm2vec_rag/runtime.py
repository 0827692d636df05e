"""What hardware to use: device and dtype; and transformers kept quiet. (The cache folder: ``paths.py``.)"""
from __future__ import annotations

import contextlib
import functools
from collections.abc import Iterator
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import torch


@contextlib.contextmanager
def quiet_transformers() -> Iterator[None]:
    """Errors only and no progress bars from transformers inside; the caller's settings come back after.

    Why: loads, merges and conversions are ours to report (one line, or a bar the caller asked for).
    """
    from transformers.utils import logging as hf_logging

    verbosity = hf_logging.get_verbosity()
    bars = hf_logging.is_progress_bar_enabled()
    hf_logging.set_verbosity_error()
    hf_logging.disable_progress_bar()
    try:
        yield
    finally:
        hf_logging.set_verbosity(verbosity)
        if bars:
            hf_logging.enable_progress_bar()


@functools.lru_cache(maxsize=1)
def cpu_has_fast_bf16() -> bool:
    """True when the CPU has AMX or AVX512-BF16 (bf16 kernels exist; whether they are faster is
    ``dtype_choice``'s question: ~3x with AMX, anything from 1x without)."""
    try:
        with open("/proc/cpuinfo", encoding="utf-8", errors="replace") as fh:
            flags = fh.read()
    except OSError:
        return False
    return "amx_bf16" in flags or "avx512_bf16" in flags


def resolve_device(device: str | torch.device | None = "auto") -> torch.device:
    """``auto`` picks CUDA when present, else CPU."""
    import torch

    if device is None or device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(device)


_DTYPES = {
    "float32": "float32", "fp32": "float32",
    "bfloat16": "bfloat16", "bf16": "bfloat16",
    "float16": "float16", "fp16": "float16",
}


def auto_dtype_choice(device: torch.device):
    """What ``auto`` means on ``device``, with the reason (a ``dtype_choice.DtypeChoice``).

    CUDA: bf16 where supported, else fp16. CPU: bf16 only where this host runs it measurably faster
    (AMX, or a once-per-host calibration; see ``dtype_choice``), fp32 otherwise.
    """
    from .dtype_choice import DtypeChoice, auto_cpu_dtype

    if device.type == "cuda":
        import torch

        bf16 = torch.cuda.is_bf16_supported()
        return DtypeChoice("bfloat16" if bf16 else "float16", "CUDA" + ("" if bf16 else " without bf16"))
    return auto_cpu_dtype()


def resolve_dtype(dtype: str | torch.dtype | None, device: torch.device) -> torch.dtype:
    """``auto``: see ``auto_dtype_choice``; a name (float32, bf16, ...) is that dtype."""
    import torch

    if isinstance(dtype, torch.dtype):
        return dtype
    if dtype is None or dtype == "auto":
        return getattr(torch, auto_dtype_choice(device).dtype)
    try:
        return getattr(torch, _DTYPES[str(dtype).lower()])
    except KeyError:
        from .errors import LLM2VecError

        raise LLM2VecError(
            f"unknown dtype {dtype!r}; choose one of: auto, {', '.join(sorted(_DTYPES))}"
        ) from None
