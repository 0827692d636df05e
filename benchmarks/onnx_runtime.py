"""ONNX Runtime against our encoder on the same model and documents, alternating runs.

Exports the native decoder (fp32, SDPA attention, plain projections: what ONNX can express)
with dynamic batch and length, runs it through onnxruntime's CPU provider with full graph
optimisation, and feeds the hidden states through our own batching and pooling, so the only
difference is the forward pass. Reports docs/s and the cosine to our fp32 vectors.

    pip install onnxruntime onnx onnxscript   # not a dependency of the package
    python benchmarks/onnx_runtime.py --docs 64 --rounds 2
"""
from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np
import torch

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "benchmarks"))
from _common import scifact_docs  # noqa: E402


class _Hidden:
    def __init__(self, hidden: torch.Tensor) -> None:
        self.last_hidden_state = hidden


class OrtDecoder(torch.nn.Module):
    """Stands where the encoder expects its decoder; the forward pass is onnxruntime's."""

    def __init__(self, path: str, config, threads: int) -> None:
        super().__init__()
        import onnxruntime as ort

        opts = ort.SessionOptions()
        opts.intra_op_num_threads = threads
        opts.inter_op_num_threads = 1
        opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        self.session = ort.InferenceSession(path, opts, providers=["CPUExecutionProvider"])
        self.config = config
        self._anchor = torch.nn.Parameter(torch.zeros(1), requires_grad=False)  # device / dtype for the encoder

    def forward(self, input_ids, attention_mask, position_ids, **_):
        (hidden,) = self.session.run(None, {"input_ids": input_ids.numpy(), "attention_mask": attention_mask.numpy(),
                                            "position_ids": position_ids.numpy()})
        return _Hidden(torch.from_numpy(hidden))


class _Export(torch.nn.Module):
    def __init__(self, model) -> None:
        super().__init__()
        self.model = model

    def forward(self, input_ids, attention_mask, position_ids):
        return self.model(input_ids=input_ids, attention_mask=attention_mask, position_ids=position_ids).last_hidden_state


def export(enc, path: Path) -> None:
    model = enc.model
    model.use_cpu_attention = False
    model.use_prepacked_weights = False
    ids = torch.randint(5, 1000, (2, 16))
    mask = torch.ones_like(ids)
    mask[0, :3] = 0
    pos = (mask.cumsum(-1) - 1).clamp(min=0)
    batch, length = torch.export.Dim("batch", min=1, max=1024), torch.export.Dim("length", min=2, max=4096)
    shapes = {"input_ids": {0: batch, 1: length}, "attention_mask": {0: batch, 1: length},
              "position_ids": {0: batch, 1: length}}
    import llm2vec_rag.native as native

    plain_mask = native._mask
    # the engine skips the mask when a batch has no padding: a data-dependent branch export cannot trace
    native._mask = lambda keep, causal: plain_mask(keep, causal) if causal else keep[:, None, None, :]
    try:
        with torch.no_grad():
            torch.onnx.export(_Export(model).eval(), (ids, mask, pos), str(path), dynamo=True,
                              dynamic_shapes=shapes,
                              input_names=["input_ids", "attention_mask", "position_ids"],
                              output_names=["hidden"], external_data=True)
    finally:
        native._mask = plain_mask
    model.use_cpu_attention = True
    model.prepack_by_default()


def main() -> None:
    from llm2vec_rag import LLM2Vec

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", default="smollm2-135m")
    ap.add_argument("--docs", type=int, default=64)
    ap.add_argument("--rounds", type=int, default=2)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--onnx", default=str(REPO / "benchmarks" / "out" / "onnx" / "decoder.onnx"))
    ap.add_argument("--out", default=str(REPO / "benchmarks" / "out" / "onnx_runtime.json"))
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    docs = scifact_docs(args.docs)
    fp32 = LLM2Vec.from_pretrained(args.model, dtype="float32", engine="native")
    onnx_path = Path(args.onnx)
    t = time.perf_counter()
    if not onnx_path.exists():
        onnx_path.parent.mkdir(parents=True, exist_ok=True)
        export(fp32, onnx_path)
    export_s = time.perf_counter() - t
    ort_enc = LLM2Vec.from_pretrained(args.model, dtype="float32", engine="native")
    ort_enc.model = OrtDecoder(str(onnx_path), ort_enc.model.config, args.threads)
    contenders = {"ours-fp32": fp32, "ours-bf16": LLM2Vec.from_pretrained(args.model, engine="native"),
                  "onnxruntime-fp32": ort_enc}
    for enc in contenders.values():
        enc.encode(docs[:16], show_progress_bar=False)
    times: dict[str, list[float]] = {k: [] for k in contenders}
    vecs = {}
    for _ in range(args.rounds):
        for name, enc in contenders.items():
            t = time.perf_counter()
            vecs[name] = enc.encode(docs, show_progress_bar=False)
            times[name].append(time.perf_counter() - t)
    unit = lambda v: v / np.linalg.norm(v, axis=1, keepdims=True)  # noqa: E731
    rows = []
    for name in contenders:
        cos = (unit(vecs[name]) * unit(vecs["ours-fp32"])).sum(1)
        rows.append({"contender": name, "docs_per_s": round(len(docs) / min(times[name]), 2),
                     "seconds": [round(x, 2) for x in times[name]],
                     "cos_to_ours_fp32_min": round(float(cos.min()), 6), "cos_mean": round(float(cos.mean()), 6)})
    result = {"args": vars(args), "export_seconds": round(export_s, 1), "rows": rows}
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(result, indent=2))
    print("| contender | docs/s | seconds per round | cosine to ours fp32 (min / mean) |\n|---|---:|---|---|")
    for r in rows:
        print(f"| {r['contender']} | {r['docs_per_s']} | {r['seconds']} | {r['cos_to_ours_fp32_min']} / {r['cos_mean']} |")


if __name__ == "__main__":
    main()
