"""Experiment (issue 20, item 3): int8 for the projections of the real default, quality and speed vs fp32/bf16.

Variants, all on the native engine's ``Linear`` modules of ``smollm2-135m``:

* ``w8-weight-only``: weights rounded to int8 with one symmetric scale per output channel, run as
  dequantized fp32 (the quality of any weight-only int8 kernel; its speed is the kernel's, measured
  separately: torch's ``_weight_int8pack_mm`` ran ~3x slower than the prepacked bf16 linear here);
* ``w8a8-per-token``: the same int8 weights, activations quantized per token (one scale per row),
  ``torch._int_mm`` (int8 x int8 -> int32, VNNI) then both scales: real kernel, real speed.

    OMP_NUM_THREADS=1 .venv/bin/python benchmarks/int8_projections.py --docs 32 --rounds 2
    OMP_NUM_THREADS=1 .venv/bin/python benchmarks/int8_projections.py --kernels   # per projection

Writes benchmarks/results/int8_projections-<host>.json. Runs alternate; cosine is to the fp32 vectors.
"""
from __future__ import annotations

import argparse
import statistics
import sys
import time
import types
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import log, machine_info, row_cosines, scifact_docs, write_json  # noqa: E402


def int8_weights(w):
    import torch

    scale = (w.abs().amax(dim=1) / 127).clamp_min(1e-12)
    q = torch.round(w / scale[:, None]).clamp(-127, 127).to(torch.int8)
    return q, scale


def weight_only(enc) -> int:
    import torch

    from llm2vec_rag.native import Linear

    n = 0
    with torch.no_grad():
        for m in enc.model.modules():
            if isinstance(m, Linear):
                q, s = int8_weights(m.weight.float())
                m.weight.copy_((q.float() * s[:, None]).to(m.weight.dtype))
                n += 1
    return n


def w8a8(enc) -> int:
    import torch

    from llm2vec_rag.native import Linear

    def forward(self, x):
        shape = x.shape
        x2 = x.reshape(-1, shape[-1]).float()
        s = (x2.abs().amax(dim=1, keepdim=True) / 127).clamp_min(1e-12)
        xq = torch.round(x2 / s).to(torch.int8)
        if xq.shape[0] <= 16:  # torch._int_mm wants > 16 rows on CPU
            y = xq.float() @ self._w8t.float()
        else:
            y = torch._int_mm(xq, self._w8t).float()
        y = y * s * self._w8s
        if self.bias is not None:
            y = y + self.bias.float()
        return y.to(x.dtype).reshape(*shape[:-1], -1)

    n = 0
    for m in enc.model.modules():
        if isinstance(m, Linear):
            q, s = int8_weights(m.weight.detach().float())
            m._w8t, m._w8s = q.t().contiguous(), s
            m.forward = types.MethodType(forward, m)
            n += 1
    return n


def kernels() -> dict:
    """Per-projection milliseconds (best of 5): prepacked fp32/bf16 ``Linear``, torch's weight-only int8
    kernel (bf16 activations), and per-token W8A8 with ``torch._int_mm`` including the casts."""
    import torch

    from llm2vec_rag.native import Linear

    def best(f, n=5):
        f()
        out = float("inf")
        for _ in range(n):
            t0 = time.perf_counter()
            f()
            out = min(out, time.perf_counter() - t0)
        return out * 1e3

    rows = []
    torch.manual_seed(0)
    with torch.no_grad():
        for d_in, d_out in ((576, 576), (576, 1536), (1536, 576)):
            for tokens in (128, 512):
                w = torch.randn(d_out, d_in) * d_in ** -0.5
                row = {"shape": [tokens, d_in, d_out]}
                for name, dt in (("fp32", torch.float32), ("bf16", torch.bfloat16)):
                    lin = Linear(d_in, d_out, bias=False)
                    lin.weight.copy_(w)
                    lin = lin.to(dt)
                    lin.prepack = True
                    x = torch.randn(tokens, d_in).to(dt)
                    row[f"{name}_ms"] = best(lambda lin=lin, x=x: lin(x))
                q, s = int8_weights(w)
                xb = torch.randn(tokens, d_in).to(torch.bfloat16)
                row["w8_weight_only_bf16_ms"] = best(
                    lambda: torch.ops.aten._weight_int8pack_mm(xb, q, s.to(torch.bfloat16)))
                qt, x = q.t().contiguous(), torch.randn(tokens, d_in)

                def w8a8():
                    sx = x.abs().amax(dim=1, keepdim=True) / 127
                    return torch._int_mm(torch.round(x / sx).to(torch.int8), qt).float() * sx * s

                row["w8a8_per_token_ms"] = best(w8a8)
                rows.append(row)
                log(" ".join(f"{k}={v:.3f}" if isinstance(v, float) else f"{k}={v}" for k, v in row.items()))
    return {"kernels": rows}


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--docs", type=int, default=32)
    ap.add_argument("--rounds", type=int, default=2)
    ap.add_argument("--batch-size", type=int, default=32)
    ap.add_argument("--kernels", action="store_true", help="only the per-projection kernel timings")
    args = ap.parse_args()

    import torch

    if args.kernels:
        from llm2vec_rag.dtype_choice import read_host_cpu

        host = read_host_cpu()
        out = Path(__file__).resolve().parent / "results" / f"int8_kernels-{'amx' if host.amx else 'no-amx'}.json"
        write_json(out, {"command": "OMP_NUM_THREADS=1 .venv/bin/python benchmarks/int8_projections.py --kernels",
                         "when": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
                         "machine": {**machine_info(), "flags": list(host.flags), "threads": torch.get_num_threads()},
                         **kernels()})
        return 0

    from llm2vec_rag import LLM2Vec
    from llm2vec_rag.dtype_choice import read_host_cpu

    docs = scifact_docs(args.docs)
    variants = {
        "fp32": LLM2Vec.from_pretrained("smollm2-135m", dtype="float32", device="cpu"),
        "bf16": LLM2Vec.from_pretrained("smollm2-135m", dtype="bfloat16", device="cpu"),
        "w8-weight-only (fp32 compute)": LLM2Vec.from_pretrained("smollm2-135m", dtype="float32", device="cpu"),
        "w8a8-per-token": LLM2Vec.from_pretrained("smollm2-135m", dtype="float32", device="cpu"),
    }
    log(f"quantized {weight_only(variants['w8-weight-only (fp32 compute)'])} linears (weight-only), "
        f"{w8a8(variants['w8a8-per-token'])} (w8a8)")
    for enc in variants.values():
        enc.encode(docs[:4], batch_size=args.batch_size, show_progress_bar=False)
    runs, vecs = [], {}
    names = list(variants)
    for r in range(args.rounds):
        for name in (names if r % 2 == 0 else names[::-1]):
            t0 = time.perf_counter()
            v = variants[name].encode(docs, batch_size=args.batch_size, show_progress_bar=False)
            sec = time.perf_counter() - t0
            vecs[name] = np.asarray(v, dtype=np.float32)
            runs.append({"round": r, "variant": name, "seconds": sec, "docs_per_s": len(docs) / sec})
            log(f"round {r} {name}: {len(docs) / sec:.2f} docs/s")
    summary = {}
    for name in names:
        cos = row_cosines(vecs[name], vecs["fp32"])
        summary[name] = {"median_docs_per_s": statistics.median(x["docs_per_s"] for x in runs if x["variant"] == name),
                         "cosine_to_fp32_min": float(cos.min()), "cosine_to_fp32_mean": float(cos.mean())}
    host = read_host_cpu()
    out = Path(__file__).resolve().parent / "results" / f"int8_projections-{'amx' if host.amx else 'no-amx'}.json"
    write_json(out, {"command": f"OMP_NUM_THREADS=1 .venv/bin/python benchmarks/int8_projections.py --docs {args.docs} "
                                f"--rounds {args.rounds}",
                     "when": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
                     "machine": {**machine_info(), "flags": list(host.flags), "threads": torch.get_num_threads()},
                     "docs": len(docs), "runs": runs, "summary": summary})
    for name, s in summary.items():
        print(f"{name:32s} {s['median_docs_per_s']:.2f} docs/s  cos min {s['cosine_to_fp32_min']:.5f} "
              f"mean {s['cosine_to_fp32_mean']:.5f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
