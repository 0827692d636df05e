"""What ``dtype="auto"`` picks on a CPU, and why: bf16 only where this host runs it measurably faster.

* ``LLM2VEC_RAG_DTYPE=float32|bfloat16`` overrides the choice (no detection, no calibration);
* no bf16 kernels (neither AMX nor AVX512-BF16, or oneDNN lacks them): fp32;
* AMX (``amx_bf16``): bf16, ~3x faster than fp32 there (docs/performance.md), no calibration;
* otherwise (AVX512-BF16 without AMX: AMD EPYC Zen 4, Xeons without AMX, VMs hiding it):
  a short calibration times the default model's projection shapes in bf16 and fp32 through the
  native engine's own ``Linear`` (prepacked oneDNN weights) and picks bf16 only when it is at least
  ``BF16_MIN_SPEEDUP`` faster. The result is cached per host (CPU model + flags) and torch version
  in ``cache_dir()/dtype-choice.json``, so it runs once per host (~0.3 s, one thread), when a
  model is first loaded with ``auto``, never at import.
"""
from __future__ import annotations

import dataclasses
import functools
import hashlib
import json
import os
import time
from collections.abc import Callable
from pathlib import Path

from .paths import cache_dir

DTYPE_ENV = "LLM2VEC_RAG_DTYPE"
CACHE_FILE = "dtype-choice.json"
BF16_MIN_SPEEDUP = 1.15
# SmolLM2-135M (the default): hidden 576, intermediate 1536; q/o, gate/up and down projections
CALIBRATION_SHAPES: tuple[tuple[int, int], ...] = ((576, 576), (576, 1536), (1536, 576))
CALIBRATION_TOKENS: tuple[int, ...] = (128, 512)
CALIBRATION_ROUNDS = 3
_FLAGS_OF_INTEREST = ("amx_bf16", "amx_tile", "amx_int8", "avx512_bf16", "avx512_fp16", "avx512_vnni",
                      "avx512f", "avx2", "avx_vnni")
# recorded one by one (true/false) in benchmark result files, so each figure says which host kind it is from
RECORDED_FLAGS = ("amx_bf16", "amx_int8", "amx_tile", "avx512_bf16", "avx512_fp16", "avx512_vnni")
_OVERRIDES = {"float32": "float32", "fp32": "float32", "bfloat16": "bfloat16", "bf16": "bfloat16"}


@dataclasses.dataclass(frozen=True)
class HostCPU:
    """What decides the choice: the CPU's name, its relevant flags, the torch build."""

    model: str
    flags: tuple[str, ...]
    torch: str

    @property
    def amx(self) -> bool:
        return "amx_bf16" in self.flags

    @property
    def avx512_bf16(self) -> bool:
        return "avx512_bf16" in self.flags

    def record(self) -> dict:
        """The CPU as result files record it: model name, each of ``RECORDED_FLAGS``, all relevant flags."""
        return {"cpu": self.model, **{flag: flag in self.flags for flag in RECORDED_FLAGS}, "flags": list(self.flags)}

    def key(self) -> str:
        text = "|".join([self.model, ",".join(sorted(self.flags)), self.torch])
        return hashlib.sha256(text.encode()).hexdigest()[:16]


@dataclasses.dataclass(frozen=True)
class Calibration:
    """Best-of-rounds seconds for one pass over the shapes in each dtype; ``ratio`` = fp32 / bf16."""

    fp32_s: float
    bf16_s: float
    threads: int
    shapes: tuple[tuple[int, int], ...]
    tokens: tuple[int, ...]
    took_s: float

    @property
    def ratio(self) -> float:
        return self.fp32_s / self.bf16_s if self.bf16_s > 0 else 0.0


@dataclasses.dataclass(frozen=True)
class DtypeChoice:
    """The dtype ``auto`` resolves to and the reason, e.g. ``calibrated: bf16 0.98x fp32 (< 1.15x)``."""

    dtype: str  # "float32" | "bfloat16" | "float16"
    reason: str
    calibration: Calibration | None = None
    cached: bool = False

    def describe(self) -> str:
        return f"{self.dtype} ({self.reason}{', cached' if self.cached else ''})"


def read_host_cpu() -> HostCPU:
    import torch

    try:
        with open("/proc/cpuinfo", encoding="utf-8", errors="replace") as fh:
            text = fh.read()
    except OSError:
        text = ""
    model, flags = "?", set()
    for line in text.splitlines():
        name, _, value = line.partition(":")
        name = name.strip()
        if name == "model name" and model == "?":
            model = value.strip()
        elif name in ("flags", "Features") and not flags:
            flags = set(value.split())
    return HostCPU(model=model, flags=tuple(sorted(flags & set(_FLAGS_OF_INTEREST))), torch=torch.__version__)


def onednn_has_bf16() -> bool:
    import torch

    return bool(torch.backends.mkldnn.is_available() and torch.ops.mkldnn._is_mkldnn_bf16_supported())


def calibrate(shapes: tuple[tuple[int, int], ...] = CALIBRATION_SHAPES,
              tokens: tuple[int, ...] = CALIBRATION_TOKENS, rounds: int = CALIBRATION_ROUNDS) -> Calibration:
    """Time the projections in fp32 and bf16, alternating, through ``native.Linear`` with prepacked weights.

    One warm-up pass per dtype (packs the weights, warms oneDNN's kernel cache), then ``rounds``
    alternating timed passes; the best of each is kept (other load only ever adds time). On one
    thread: the bf16/fp32 ratio is the kernels' (the ISA's), and one thread needs one free core,
    whereas two threads on a shared 2-core machine measured mostly waiting (1.05x there, against
    1.65-1.97x on one thread and 1.6-2.2x end to end; docs/performance.md).
    """
    import torch

    start = time.perf_counter()
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        best = _time_projections(shapes, tokens, rounds)
    finally:
        torch.set_num_threads(threads)
    return Calibration(fp32_s=best[torch.float32], bf16_s=best[torch.bfloat16], threads=1,
                       shapes=tuple(shapes), tokens=tuple(tokens), took_s=time.perf_counter() - start)


def _time_projections(shapes: tuple[tuple[int, int], ...], tokens: tuple[int, ...], rounds: int) -> dict:
    import torch

    from .native import Linear

    gen = torch.Generator().manual_seed(0)
    layers: dict[torch.dtype, list[tuple[Linear, torch.Tensor]]] = {}
    for dtype in (torch.float32, torch.bfloat16):
        pairs = []
        for d_in, d_out in shapes:
            lin = Linear(d_in, d_out, bias=False)
            with torch.no_grad():
                lin.weight.copy_(torch.randn(d_out, d_in, generator=gen) * d_in ** -0.5)
            lin = lin.to(dtype)
            lin.prepack = True
            for n in tokens:
                pairs.append((lin, torch.randn(n, d_in, generator=gen).to(dtype)))
        layers[dtype] = pairs

    def one_pass(dtype: torch.dtype) -> float:
        t0 = time.perf_counter()
        for lin, x in layers[dtype]:
            lin(x)
        return time.perf_counter() - t0

    best = {torch.float32: float("inf"), torch.bfloat16: float("inf")}
    with torch.no_grad():
        for dtype in best:
            one_pass(dtype)
        for _ in range(rounds):
            for dtype in best:
                best[dtype] = min(best[dtype], one_pass(dtype))
    return best


def _cache_path() -> Path:
    return cache_dir() / CACHE_FILE


def _read_cache(path: Path) -> dict:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}
    return data if isinstance(data, dict) and isinstance(data.get("hosts"), dict) else {}


def _write_cache(path: Path, key: str, host: HostCPU, calib: Calibration, dtype: str) -> None:
    """Atomic (temp file + rename): a killed run leaves the old file or the new one, never half."""
    data = _read_cache(path) or {"version": 1, "hosts": {}}
    data["hosts"][key] = {
        "cpu": host.model, "flags": list(host.flags), "torch": host.torch, "dtype": dtype,
        "calibration": {**dataclasses.asdict(calib), "ratio": round(calib.ratio, 4)},
    }
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(f"{path.name}.{os.getpid()}.tmp")
        tmp.write_text(json.dumps(data, indent=2), encoding="utf-8")
        os.replace(tmp, path)
    except OSError:  # a read-only cache costs a calibration per process, never a failure
        pass


def _cached_calibration(entry: object) -> Calibration | None:
    if not isinstance(entry, dict) or not isinstance(entry.get("calibration"), dict):
        return None
    c = entry["calibration"]
    try:
        return Calibration(fp32_s=float(c["fp32_s"]), bf16_s=float(c["bf16_s"]), threads=int(c["threads"]),
                           shapes=tuple(tuple(s) for s in c["shapes"]), tokens=tuple(c["tokens"]),
                           took_s=float(c["took_s"]))
    except (KeyError, TypeError, ValueError):
        return None


def choice_from_calibration(calib: Calibration, cached: bool) -> DtypeChoice:
    faster = calib.ratio >= BF16_MIN_SPEEDUP
    sign = ">=" if faster else "<"
    reason = f"avx512_bf16 without AMX, calibrated: bf16 {calib.ratio:.2f}x fp32, {sign} {BF16_MIN_SPEEDUP}x"
    return DtypeChoice("bfloat16" if faster else "float32", reason, calib, cached)


def choose_cpu_dtype(host: HostCPU | None = None, has_bf16_kernels: bool | None = None,
                     run_calibration: Callable[[], Calibration] | None = None,
                     cache_path: Path | None = None) -> DtypeChoice:
    """The decision itself; every input can be given (tests), else it is detected."""
    override = os.environ.get(DTYPE_ENV, "").strip().lower()
    if override:
        if override not in _OVERRIDES:
            from .errors import LLM2VecError

            raise LLM2VecError(f"{DTYPE_ENV}={override!r}: choose float32 or bfloat16")
        return DtypeChoice(_OVERRIDES[override], f"{DTYPE_ENV}={override}")
    host = read_host_cpu() if host is None else host
    if not (host.amx or host.avx512_bf16):
        return DtypeChoice("float32", "no AMX or AVX512-BF16 on this CPU")
    if not (onednn_has_bf16() if has_bf16_kernels is None else has_bf16_kernels):
        return DtypeChoice("float32", "this torch build has no oneDNN bf16 kernels")
    if host.amx:
        return DtypeChoice("bfloat16", "AMX: bf16 matmuls ~3x fp32")
    path = _cache_path() if cache_path is None else cache_path
    key = host.key()
    calib = _cached_calibration(_read_cache(path).get("hosts", {}).get(key))
    if calib is not None:
        return choice_from_calibration(calib, cached=True)
    calib = (calibrate if run_calibration is None else run_calibration)()
    choice = choice_from_calibration(calib, cached=False)
    _write_cache(path, key, host, calib, choice.dtype)
    return choice


@functools.lru_cache(maxsize=8)
def _memo(cache_path: str) -> DtypeChoice:
    return choose_cpu_dtype(cache_path=Path(cache_path))


def auto_cpu_dtype() -> DtypeChoice:
    """``choose_cpu_dtype`` once per process and cache directory (the override is read every time)."""
    if os.environ.get(DTYPE_ENV, "").strip():
        return choose_cpu_dtype()
    return _memo(str(_cache_path()))
