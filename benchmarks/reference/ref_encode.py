"""Encode texts with the reference ``llm2vec==0.2.3`` (or sentence-transformers), inside ``.venv-ref``.

Not imported by anything: ``benchmarks/_common.py:run_reference`` runs it as

    .venv-ref/bin/python benchmarks/reference/ref_encode.py JOB.json REPLY.json

JOB.json::

    {"model_dir": "...", "threads": 2, "max_length": 512, "doc_max_length": 400,
     "batch_size": 32,
     "runs": [{"name": "mean-bidi", "kind": "llm2vec" | "sentence-transformers",
               "pooling_mode": "mean", "enable_bidirectional": true,
               "dtype": "float32" | "bfloat16", "variant": "fixed" | "as-shipped",
               "inputs": "inputs.json", "out": "vectors.npy",
               "warmup": 16, "tokens": false}]}

``inputs.json`` is a list of strings or ``[instruction, text]`` pairs. Each run
writes its vectors (float32 ``.npy``) and reports its wall-clock seconds.

``variant``: "as-shipped" is the reference class untouched. "fixed" is a
subclass with two changes, both needed for SmolLM2 and both documented in
docs/parity.md: ``eos_token`` appends the tokenizer's real EOS token (the
reference appends the literal string " </s>" for every Llama config), and
``bos_token`` prepends the tokenizer's BOS token (the reference selects
positions where ``input_ids == bos_token_id``, but SmolLM2's tokenizer adds no
BOS, so the selection is empty). Every other pooling mode is unchanged.
"""
from __future__ import annotations

import json
import sys
import time
import traceback

import numpy as np
import torch


def log(msg: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] ref: {msg}", file=sys.stderr, flush=True)


def _fixed_class():
    from llm2vec import LLM2Vec

    class FixedSpecials(LLM2Vec):
        """The reference with the tokenizer's real EOS / BOS tokens (see the module docstring)."""

        def prepare_for_tokenization(self, text):
            if self.pooling_mode == "eos_token":
                return text.strip() + self.tokenizer.eos_token
            text = super().prepare_for_tokenization(text)
            if self.pooling_mode == "bos_token":
                text = self.tokenizer.bos_token + text
            return text

    return FixedSpecials


_MODELS: dict = {}


def load_base(model_dir: str, bidirectional: bool, dtype: str):
    """Model and tokenizer through the reference's own ``LLM2Vec.from_pretrained`` (cached per setting)."""
    from llm2vec import LLM2Vec

    key = (model_dir, bidirectional, dtype)
    if key not in _MODELS:
        t0 = time.perf_counter()
        wrapper = LLM2Vec.from_pretrained(
            model_dir,
            enable_bidirectional=bidirectional,
            torch_dtype=getattr(torch, dtype),
        )
        _MODELS.clear()  # one model in memory at a time
        _MODELS[key] = (wrapper.model, wrapper.tokenizer)
        log(f"loaded {type(wrapper.model).__name__} bidirectional={bidirectional} {dtype} "
            f"in {time.perf_counter() - t0:.1f}s")
    return _MODELS[key]


def as_pairs(inputs):
    # The reference treats a list whose first item is a string as all strings;
    # mixed lists break it, so plain texts become ["", text] (its own convention).
    return [["", x] if isinstance(x, str) else [x[0], x[1]] for x in inputs]


def token_view(encoder, pairs):
    """Per input: the ids the reference feeds the model and its pooled-token mask."""
    views = []
    for instr, text in pairs:
        s = encoder.prepare_for_tokenization(encoder._convert_to_str(instr, text))
        feats = encoder.tokenize([s])
        views.append({"ids": feats["input_ids"][0].tolist(), "mask": feats["embed_mask"][0].tolist()})
    return views


def run_llm2vec(job: dict, run: dict) -> dict:
    from llm2vec import LLM2Vec

    model, tokenizer = load_base(job["model_dir"], bool(run["enable_bidirectional"]), run.get("dtype", "float32"))
    cls = _fixed_class() if run.get("variant", "fixed") == "fixed" else LLM2Vec
    encoder = cls(
        model=model,
        tokenizer=tokenizer,
        pooling_mode=run["pooling_mode"],
        max_length=int(job.get("max_length", 512)),
        doc_max_length=int(job.get("doc_max_length", 400)),
    )
    pairs = as_pairs(json.load(open(run["inputs"], encoding="utf-8")))
    bs = int(job.get("batch_size", 32))
    reply: dict = {}
    if run.get("tokens"):
        reply["tokens"] = token_view(encoder, pairs)
    if run.get("warmup"):
        encoder.encode(pairs[: int(run["warmup"])], batch_size=bs, show_progress_bar=False)
    t0, c0 = time.perf_counter(), time.process_time()
    vecs = encoder.encode(pairs, batch_size=bs, show_progress_bar=False, convert_to_numpy=True)
    reply["seconds"] = time.perf_counter() - t0
    reply["cpu_seconds"] = time.process_time() - c0  # all threads of this process
    vecs = np.asarray(vecs, dtype=np.float32)
    if vecs.shape[0] != len(pairs):
        raise RuntimeError(f"reference returned {vecs.shape[0]} vectors for {len(pairs)} inputs")
    np.save(run["out"], vecs)
    reply["shape"] = list(vecs.shape)
    reply["model"] = {
        "class": type(model).__name__,
        "rope_theta": getattr(model.config, "rope_theta", None),
        "attn_implementation": getattr(model.config, "_attn_implementation", None),
        "dtype": str(next(model.parameters()).dtype),
    }
    return reply


def run_sentence_transformers(job: dict, run: dict) -> dict:
    from sentence_transformers import SentenceTransformer

    t0 = time.perf_counter()
    model = SentenceTransformer(job["model_dir"], device="cpu")
    log(f"loaded sentence-transformers model in {time.perf_counter() - t0:.1f}s "
        f"(max_seq_length={model.max_seq_length})")
    texts = [x if isinstance(x, str) else x[1] for x in json.load(open(run["inputs"], encoding="utf-8"))]
    bs = int(job.get("batch_size", 32))
    if run.get("warmup"):
        model.encode(texts[: int(run["warmup"])], batch_size=bs, show_progress_bar=False)
    t0, c0 = time.perf_counter(), time.process_time()
    vecs = model.encode(texts, batch_size=bs, show_progress_bar=False, convert_to_numpy=True)
    seconds, cpu = time.perf_counter() - t0, time.process_time() - c0
    np.save(run["out"], np.asarray(vecs, dtype=np.float32))
    return {"seconds": seconds, "cpu_seconds": cpu, "shape": list(vecs.shape), "max_seq_length": model.max_seq_length}


def meta() -> dict:
    import transformers

    info = {"transformers": transformers.__version__, "torch": torch.__version__,
            "threads": torch.get_num_threads()}
    try:
        import llm2vec  # noqa: F401
        from importlib.metadata import version

        info["llm2vec"] = version("llm2vec")
    except Exception:  # pragma: no cover - informational only
        pass
    return info


def main(job_path: str, reply_path: str) -> int:
    job = json.load(open(job_path, encoding="utf-8"))
    torch.set_num_threads(int(job.get("threads", 2)))
    replies = []
    for run in job["runs"]:
        try:
            if run.get("kind", "llm2vec") == "sentence-transformers":
                reply = run_sentence_transformers(job, run)
            else:
                reply = run_llm2vec(job, run)
            reply["ok"] = True
        except Exception as exc:  # report, keep going: an as-shipped quirk may raise
            reply = {"ok": False, "error": f"{type(exc).__name__}: {exc}"}
            log(f"run {run['name']} failed:\n{traceback.format_exc()}")
        reply["name"] = run["name"]
        replies.append(reply)
        log(f"run {run['name']}: " + (f"{reply['seconds']:.2f}s" if reply.get("ok") else reply["error"]))
    out = {"runs": replies, "meta": meta()}
    with open(reply_path, "w", encoding="utf-8") as fh:
        json.dump(out, fh)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1], sys.argv[2]))
