"""Try speed-ups on the encoder and measure them side by side, alternating runs.

Variants: bf16 eager (baseline, native engine), fp32, bf16 through the
transformers engine, bf16 + torch.compile, int8 dynamic quantization (fp32
activations; transformers engine, whose nn.Linear torch's quantizer swaps),
int8 weights inside the bf16 native model (each Linear quantizes its input on the
fly and hands bf16 back; attention and norms stay bf16), bf16 with SDPA instead of
span attention, and bf16/fp32 without prepacked weights (plain ``F.linear``), each on the same
SciFact documents; reports texts/s and the min/mean cosine
to the fp32 vectors (quality proxy).

    python benchmarks/encode_variants.py --docs 256 --rounds 2
    python benchmarks/encode_variants.py --docs 96 --rounds 3 --variants bf16,fp32,int8-dynamic
"""
from __future__ import annotations

import argparse
import json
import os
import time
from pathlib import Path

import numpy as np
import torch

REPO = Path(__file__).resolve().parents[1]
DATA = Path(os.environ.get("LLM2VEC_RAG_DATA", REPO.parent / "shared" / "data"))


def load_docs(n: int) -> list[str]:
    docs = []
    with open(DATA / "scifact" / "corpus.jsonl", encoding="utf-8") as fh:
        for line in fh:
            row = json.loads(line)
            docs.append((row.get("title", "") + " " + row.get("text", "")).strip())
            if len(docs) >= n:
                break
    return docs


ALL_VARIANTS = ("bf16", "fp32", "bf16@transformers", "bf16+compile", "int8-dynamic", "int8+bf16", "bf16+sdpa",
                "bf16-unpacked", "fp32-unpacked")


class Int8Linear(torch.nn.Module):
    """A bf16 model's Linear as torch's dynamic int8 kernel: fp32 in, int8 matmul, bf16 out."""

    def __init__(self, linear: torch.nn.Linear) -> None:
        super().__init__()
        full = torch.nn.Linear(linear.in_features, linear.out_features, bias=linear.bias is not None)
        full.load_state_dict({k: v.float() for k, v in linear.state_dict().items()})
        self.inner = torch.ao.quantization.quantize_dynamic(torch.nn.Sequential(full), {torch.nn.Linear},
                                                            dtype=torch.qint8)[0]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.inner(x.float()).to(x.dtype)


def int8_linears(module: torch.nn.Module) -> None:
    for name, child in module.named_children():
        if isinstance(child, torch.nn.Linear):
            setattr(module, name, Int8Linear(child))
        else:
            int8_linears(child)


def make_variants(model_name: str, wanted: list[str]):
    from llm2vec_rag import LLM2Vec

    def build(name: str):
        if name == "bf16":
            return LLM2Vec.from_pretrained(model_name, dtype="bfloat16")
        if name == "fp32":
            return LLM2Vec.from_pretrained(model_name, dtype="float32")
        if name == "bf16@transformers":
            return LLM2Vec.from_pretrained(model_name, dtype="bfloat16", engine="transformers")
        if name == "bf16+compile":
            return LLM2Vec.from_pretrained(model_name, dtype="bfloat16", compile=True)
        if name == "int8-dynamic":
            enc = LLM2Vec.from_pretrained(model_name, dtype="float32", engine="transformers")
            enc.model = torch.ao.quantization.quantize_dynamic(enc.model, {torch.nn.Linear}, dtype=torch.qint8)
            return enc
        if name == "int8+bf16":
            enc = LLM2Vec.from_pretrained(model_name, dtype="bfloat16", engine="native")
            int8_linears(enc.model)
            return enc
        if name == "bf16+sdpa":
            enc = LLM2Vec.from_pretrained(model_name, dtype="bfloat16", engine="native")
            enc.model.use_cpu_attention = False
            return enc
        if name in ("bf16-unpacked", "fp32-unpacked"):
            enc = LLM2Vec.from_pretrained(model_name, dtype=name.replace("bf16", "bfloat16").replace("fp32", "float32")
                                          .removesuffix("-unpacked"), engine="native")
            enc.model.use_prepacked_weights = False
            return enc
        raise SystemExit(f"unknown variant {name}; choose from {', '.join(ALL_VARIANTS)}")

    return {name: build(name) for name in dict.fromkeys(["bf16", "fp32", *wanted])}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", default="smollm2-135m")
    ap.add_argument("--docs", type=int, default=256)
    ap.add_argument("--rounds", type=int, default=2)
    ap.add_argument("--batch-size", type=int, default=32)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--variants", default=",".join(ALL_VARIANTS), help="comma-separated (bf16 and fp32 always run)")
    ap.add_argument("--out", default=str(REPO / "benchmarks" / "out" / "encode_variants.json"))
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    docs = load_docs(args.docs)
    variants = make_variants(args.model, [v for v in args.variants.split(",") if v])
    for enc in variants.values():  # warm-up (compile happens here)
        enc.encode(docs[:64], batch_size=args.batch_size, show_progress_bar=False)
    times: dict[str, list[float]] = {k: [] for k in variants}
    vectors: dict[str, np.ndarray] = {}
    for _ in range(args.rounds):
        for name, enc in variants.items():
            t = time.perf_counter()
            vectors[name] = enc.encode(docs, batch_size=args.batch_size, show_progress_bar=False)
            times[name].append(time.perf_counter() - t)
    ref = vectors["fp32"] / np.linalg.norm(vectors["fp32"], axis=1, keepdims=True)
    rows = []
    base = len(docs) / min(times["bf16"])
    for name in variants:
        v = vectors[name] / np.linalg.norm(vectors[name], axis=1, keepdims=True)
        cos = (v * ref).sum(1)
        tps = len(docs) / min(times[name])
        rows.append({"variant": name, "texts_per_s": round(tps, 2), "vs_bf16": round(tps / base, 3),
                     "cos_min": round(float(cos.min()), 5), "cos_mean": round(float(cos.mean()), 5)})
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps({"args": vars(args), "rows": rows}, indent=2))
    print(f"| variant | texts/s | vs bf16 | cos to fp32 (min / mean) |\n|---|---:|---:|---|")
    for r in rows:
        print(f"| {r['variant']} | {r['texts_per_s']} | {r['vs_bf16']} | {r['cos_min']} / {r['cos_mean']} |")


if __name__ == "__main__":
    main()
