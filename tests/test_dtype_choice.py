"""dtype="auto" on CPU: bf16 only where the host runs it measurably faster (issue 20, item 1).

The CPU detection and the calibration are injected (both ways); the calibration itself runs for
real once, on tiny shapes, and the real encoder loads in what the decision says.
"""
from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import pytest
import torch
from click.testing import CliRunner

from llm2vec_rag import LLM2Vec
from llm2vec_rag import dtype_choice
from llm2vec_rag.dtype_choice import DTYPE_ENV, Calibration, HostCPU, calibrate, choose_cpu_dtype
from llm2vec_rag.errors import LLM2VecError

AMX = HostCPU("Intel Xeon (test)", ("amx_bf16", "amx_tile", "avx512_bf16", "avx512_vnni"), "2.x")
NO_AMX = HostCPU("AMD EPYC (test)", ("avx512_bf16", "avx512_vnni"), "2.x")
PLAIN = HostCPU("Old CPU (test)", ("avx2",), "2.x")


@pytest.fixture(autouse=True)
def no_override(monkeypatch):
    monkeypatch.delenv(DTYPE_ENV, raising=False)
    dtype_choice._memo.cache_clear()
    yield
    dtype_choice._memo.cache_clear()


class Timer:
    """A stand-in calibration with a chosen fp32/bf16 ratio, counting its calls."""

    def __init__(self, ratio: float) -> None:
        self.ratio, self.calls = ratio, 0

    def __call__(self) -> Calibration:
        self.calls += 1
        return Calibration(fp32_s=0.02 * self.ratio, bf16_s=0.02, threads=1, shapes=((8, 8),), tokens=(4,),
                           took_s=0.1)


def test_amx_picks_bf16_without_calibrating(tmp_path):
    timer = Timer(0.5)
    choice = choose_cpu_dtype(AMX, has_bf16_kernels=True, run_calibration=timer, cache_path=tmp_path / "c.json")
    assert choice.dtype == "bfloat16" and "AMX" in choice.reason
    assert timer.calls == 0 and not (tmp_path / "c.json").exists()


def test_no_bf16_at_all_is_fp32_without_calibrating(tmp_path):
    timer = Timer(3.0)
    for host, kernels in ((PLAIN, True), (NO_AMX, False), (AMX, False)):
        choice = choose_cpu_dtype(host, has_bf16_kernels=kernels, run_calibration=timer, cache_path=tmp_path / "c.json")
        assert choice.dtype == "float32"
    assert timer.calls == 0


@pytest.mark.parametrize("ratio, expected", [(1.02, "float32"), (0.8, "float32"), (1.14, "float32"),
                                             (1.15, "bfloat16"), (1.9, "bfloat16")])
def test_without_amx_calibration_decides(tmp_path, ratio, expected):
    timer = Timer(ratio)
    choice = choose_cpu_dtype(NO_AMX, has_bf16_kernels=True, run_calibration=timer, cache_path=tmp_path / "c.json")
    assert choice.dtype == expected and timer.calls == 1
    assert "calibrated" in choice.reason and f"{ratio:.2f}x" in choice.reason and not choice.cached


def test_calibration_is_cached_per_host_and_torch(tmp_path):
    path = tmp_path / "sub" / "dtype-choice.json"
    slow = Timer(1.0)
    first = choose_cpu_dtype(NO_AMX, has_bf16_kernels=True, run_calibration=slow, cache_path=path)
    again = choose_cpu_dtype(NO_AMX, has_bf16_kernels=True, run_calibration=Timer(5.0), cache_path=path)
    assert slow.calls == 1 and first.dtype == again.dtype == "float32" and again.cached
    stored = json.loads(path.read_text(encoding="utf-8"))
    (entry,) = stored["hosts"].values()
    assert entry["cpu"] == NO_AMX.model and entry["dtype"] == "float32" and entry["calibration"]["ratio"] == 1.0
    assert not list(path.parent.glob("*.tmp"))  # atomic write leaves no temp file
    # another CPU, or another torch, calibrates again; both entries stay
    other_torch = HostCPU(NO_AMX.model, NO_AMX.flags, "3.x")
    fast = Timer(2.0)
    assert choose_cpu_dtype(other_torch, has_bf16_kernels=True, run_calibration=fast, cache_path=path).dtype == "bfloat16"
    assert fast.calls == 1 and len(json.loads(path.read_text(encoding="utf-8"))["hosts"]) == 2
    # a damaged cache file is recalibrated and rewritten, never an error
    path.write_text("{not json", encoding="utf-8")
    redo = Timer(1.0)
    assert choose_cpu_dtype(NO_AMX, has_bf16_kernels=True, run_calibration=redo, cache_path=path).dtype == "float32"
    assert redo.calls == 1 and json.loads(path.read_text(encoding="utf-8"))["hosts"]


def test_override_skips_detection(monkeypatch, tmp_path):
    timer = Timer(3.0)
    for value, expected in (("float32", "float32"), ("bf16", "bfloat16"), ("BFloat16", "bfloat16"), ("fp32", "float32")):
        monkeypatch.setenv(DTYPE_ENV, value)
        choice = choose_cpu_dtype(NO_AMX, has_bf16_kernels=True, run_calibration=timer, cache_path=tmp_path / "c.json")
        assert choice.dtype == expected and DTYPE_ENV in choice.reason
    assert timer.calls == 0
    monkeypatch.setenv(DTYPE_ENV, "float8")
    with pytest.raises(LLM2VecError, match=DTYPE_ENV):
        choose_cpu_dtype(NO_AMX, has_bf16_kernels=True, run_calibration=timer, cache_path=tmp_path / "c.json")


def test_real_calibration_times_both_dtypes_quickly():
    calib = calibrate(shapes=((64, 128), (128, 64)), tokens=(16,), rounds=2)
    assert calib.fp32_s > 0 and calib.bf16_s > 0 and calib.ratio > 0
    assert calib.threads == 1 and calib.took_s < 5


def test_encoder_and_models_command_follow_the_decision(monkeypatch, tiny_model_dir, isolated_cache):
    from llm2vec_rag.cli.main import cli

    for ratio, expected in ((1.0, torch.float32), (2.0, torch.bfloat16)):
        dtype_choice._memo.cache_clear()
        (isolated_cache / dtype_choice.CACHE_FILE).unlink(missing_ok=True)
        timer = Timer(ratio)
        monkeypatch.setattr(dtype_choice, "read_host_cpu", lambda: NO_AMX)
        monkeypatch.setattr(dtype_choice, "onednn_has_bf16", lambda: True)
        monkeypatch.setattr(dtype_choice, "calibrate", timer)
        enc = LLM2Vec.from_pretrained(str(tiny_model_dir), dtype="auto", device="cpu")
        assert next(enc.model.parameters()).dtype == expected
        result = CliRunner().invoke(cli, ["models"])
        assert result.exit_code == 0, result.output
        assert f"dtype auto on this host: {str(expected).removeprefix('torch.')}" in result.output
        assert "calibrated" in result.output
        rows = [json.loads(line) for line in CliRunner().invoke(cli, ["models", "--json"]).output.splitlines()]
        assert {r["auto_dtype"] for r in rows} == {str(expected).removeprefix("torch.")}
        assert timer.calls == 1  # the encoder, then both commands: calibrated once (cached on disk)


def test_benchmark_results_record_the_cpu_flags_that_tell_host_kinds_apart():
    """Which host a figure comes from (AMX or not, AVX512-FP16, VNNI) is in every result file (issue 20)."""
    amx, no_amx = AMX.record(), NO_AMX.record()
    assert amx["cpu"] == "Intel Xeon (test)" and amx["amx_bf16"] and amx["amx_tile"] and not amx["amx_int8"]
    assert not no_amx["amx_bf16"] and no_amx["avx512_bf16"] and no_amx["avx512_vnni"] and not no_amx["avx512_fp16"]
    spec = importlib.util.spec_from_file_location("bench_common",
                                                  Path(__file__).resolve().parents[1] / "benchmarks" / "_common.py")
    bench = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(bench)
    info = bench.machine_info()
    flags = ("amx_bf16", "amx_int8", "amx_tile", "avx512_bf16", "avx512_fp16", "avx512_vnni")
    assert {"cpu", "logical_cpus", "flags", "torch", *flags} <= set(info)
    assert all(info[f] == (f in info["flags"]) for f in flags) and info["cpu"] == dtype_choice.read_host_cpu().model
