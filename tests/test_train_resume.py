"""Kill a training run with SIGKILL after a checkpoint, resume it, and get the uninterrupted run's weights."""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from conftest import CORPUS
from safetensors.torch import load_file
from test_train import write_causal_dir

STEPS = 30


def _command(data: Path, model: Path, out: Path, resume: bool = False) -> list[str]:
    cmd = [sys.executable, "-c", "from llm2vec_rag.cli.main import main; main()", "train", "mntp", str(data),
           "--output-dir", str(out), "--model", str(model), "--steps", str(STEPS), "--batch-size", "4",
           "--max-length", "32", "--lr", "5e-3", "--warmup-steps", "3", "--save-every", "3", "--log-every", "1",
           "--bf16", "off", "--threads", "1", "--seed", "7", "--quiet"]
    return cmd + (["--resume"] if resume else [])


def _env(tmp_path: Path) -> dict[str, str]:
    return {**os.environ, "LLM2VEC_RAG_CACHE": str(tmp_path / "cache"), "HF_HUB_OFFLINE": "1",
            "OMP_NUM_THREADS": "1", "TOKENIZERS_PARALLELISM": "false"}


def test_sigkill_then_resume_matches_uninterrupted_run(tmp_path):
    model = write_causal_dir(tmp_path / "causal")
    data = tmp_path / "corpus.txt"
    data.write_text("\n".join(CORPUS * 3) + "\n", encoding="utf-8")
    env = _env(tmp_path)

    killed = tmp_path / "killed"
    proc = subprocess.Popen(_command(data, model, killed), env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    deadline = time.monotonic() + 240
    checkpoints = killed / "checkpoints"
    while time.monotonic() < deadline and proc.poll() is None:
        if checkpoints.is_dir() and any(p.name.startswith("step-") and not p.name.endswith(".tmp")
                                        for p in checkpoints.iterdir()):
            break
        time.sleep(0.02)
    assert proc.poll() is None, "the run ended before it could be killed: " + proc.stderr.read().decode()[-500:]
    proc.send_signal(signal.SIGKILL)
    proc.wait(30)
    assert not (killed / "adapter_model.safetensors").exists()  # it really died mid-run
    saved = sorted(int(p.name[5:]) for p in checkpoints.iterdir() if not p.name.endswith(".tmp"))
    assert saved and saved[-1] < STEPS

    resumed = subprocess.run(_command(data, model, killed, resume=True), env=env, capture_output=True, text=True,
                             timeout=240)
    assert resumed.returncode == 0, resumed.stderr[-1000:]
    card = json.loads((killed / "training_card.json").read_text())
    assert card["steps"] == STEPS
    log = [json.loads(line)["step"] for line in (killed / "train_log.jsonl").read_text().splitlines()]
    assert log == list(range(1, STEPS + 1))  # no step lost, none logged twice
    state = json.loads((killed / "checkpoints" / f"step-{STEPS:06d}" / "state.json").read_text())
    assert state["step"] == STEPS

    straight = tmp_path / "straight"
    full = subprocess.run(_command(data, model, straight), env=env, capture_output=True, text=True, timeout=240)
    assert full.returncode == 0, full.stderr[-1000:]
    a = load_file(str(killed / "adapter_model.safetensors"))
    b = load_file(str(straight / "adapter_model.safetensors"))
    assert a.keys() == b.keys() and a
    for key in a:
        assert (a[key] - b[key]).abs().max().item() <= 1e-6, key
    initial = [json.loads(line) for line in (straight / "train_log.jsonl").read_text().splitlines()]
    again = [json.loads(line) for line in (killed / "train_log.jsonl").read_text().splitlines()]
    assert [e["loss"] for e in initial] == [e["loss"] for e in again]


def test_sigterm_saves_a_checkpoint_of_the_steps_done(tmp_path):
    model = write_causal_dir(tmp_path / "causal")
    data = tmp_path / "corpus.txt"
    data.write_text("\n".join(CORPUS * 3) + "\n", encoding="utf-8")
    out = tmp_path / "run"
    cmd = _command(data, model, out)
    cmd[cmd.index("--save-every") + 1] = "1000"  # no periodic checkpoint: only the one SIGTERM writes
    proc = subprocess.Popen(cmd, env=_env(tmp_path), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    log = out / "train_log.jsonl"
    deadline = time.monotonic() + 240
    while time.monotonic() < deadline and proc.poll() is None:
        if log.is_file() and len(log.read_text().splitlines()) >= 2:
            break
        time.sleep(0.02)
    assert proc.poll() is None
    proc.send_signal(signal.SIGTERM)
    _, err = proc.communicate(timeout=60)
    assert proc.returncode != 0 and "continue with --resume" in err
    saved = [int(p.name[5:]) for p in (out / "checkpoints").iterdir()]
    assert len(saved) == 1 and 2 <= saved[0] < STEPS
