"""What ``dtype="auto"`` should pick on this host: bf16 vs fp32 document encoding of the real default.

One process loads the default model (``smollm2-135m``, native engine) twice, in fp32 and bf16,
then alternates runs over the same N SciFact documents (fp32, bf16, bf16, fp32, ...), so drifting
load from other processes hits both. Each side encodes 8 documents untimed first. The auto-dtype
calibration (llm2vec_rag/dtype_choice.py) runs in the same invocation, before and after, and its
own figures are stored next to the end-to-end ones, with the CPU's flags.

    OMP_NUM_THREADS=1 .venv/bin/python benchmarks/auto_dtype.py --docs 64 --rounds 3

Writes benchmarks/results/auto_dtype-<host>.json (host = amx / no-amx).
"""
from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import log, machine_info, row_cosines, scifact_docs, write_json  # noqa: E402

RESULTS = Path(__file__).resolve().parent / "results"


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--docs", type=int, default=64)
    ap.add_argument("--rounds", type=int, default=3, help="pairs of runs (each pair: both dtypes, order alternating)")
    ap.add_argument("--batch-size", type=int, default=32)
    ap.add_argument("--model", default="smollm2-135m")
    ap.add_argument("--out", type=Path, default=None)
    args = ap.parse_args()

    import torch

    from llm2vec_rag import LLM2Vec
    from llm2vec_rag.dtype_choice import choice_from_calibration, calibrate, read_host_cpu

    host = read_host_cpu()
    calibrations = [calibrate()]
    log(f"calibration: bf16 {calibrations[0].ratio:.2f}x fp32 ({calibrations[0].took_s:.2f} s)")
    docs = scifact_docs(args.docs)
    encoders = {d: LLM2Vec.from_pretrained(args.model, dtype=d, device="cpu") for d in ("float32", "bfloat16")}
    for enc in encoders.values():
        enc.encode(docs[:8], batch_size=args.batch_size, show_progress_bar=False)
    runs: list[dict] = []
    vectors: dict[str, np.ndarray] = {}
    for r in range(args.rounds):
        order = ("float32", "bfloat16") if r % 2 == 0 else ("bfloat16", "float32")
        for dtype in order:
            t0 = time.perf_counter()
            vecs = encoders[dtype].encode(docs, batch_size=args.batch_size, show_progress_bar=False)
            seconds = time.perf_counter() - t0
            vectors[dtype] = np.asarray(vecs, dtype=np.float32)
            runs.append({"round": r, "dtype": dtype, "seconds": seconds, "docs_per_s": len(docs) / seconds})
            log(f"round {r} {dtype}: {len(docs) / seconds:.2f} docs/s ({seconds:.1f} s)")
    calibrations.append(calibrate())
    log(f"calibration: bf16 {calibrations[1].ratio:.2f}x fp32 ({calibrations[1].took_s:.2f} s)")

    def med(dtype: str) -> float:
        return statistics.median(x["docs_per_s"] for x in runs if x["dtype"] == dtype)

    pair_ratios = [b["docs_per_s"] / a["docs_per_s"]
                   for a, b in zip([x for x in runs if x["dtype"] == "float32"],
                                   [x for x in runs if x["dtype"] == "bfloat16"])]
    cos = row_cosines(vectors["bfloat16"], vectors["float32"])
    result = {
        "command": f"OMP_NUM_THREADS={os.environ.get('OMP_NUM_THREADS', '')} .venv/bin/python benchmarks/auto_dtype.py "
                   f"--docs {args.docs} --rounds {args.rounds} --batch-size {args.batch_size}",
        "when": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "machine": {**machine_info(), "flags": list(host.flags), "amx": host.amx,
                    "avx512_vnni": "avx512_vnni" in host.flags, "threads": torch.get_num_threads(),
                    "loadavg_start_end": None},
        "model": args.model, "docs": len(docs), "batch_size": args.batch_size,
        "runs": runs,
        "median_docs_per_s": {"float32": med("float32"), "bfloat16": med("bfloat16")},
        "bf16_over_fp32_per_pair": pair_ratios,
        "bf16_over_fp32_median": med("bfloat16") / med("float32"),
        "cosine_bf16_fp32": {"min": float(cos.min()), "mean": float(cos.mean())},
        "calibration": [{"fp32_s": c.fp32_s, "bf16_s": c.bf16_s, "ratio": c.ratio, "threads": c.threads,
                         "took_s": c.took_s, "choice": choice_from_calibration(c, cached=False).dtype}
                        for c in calibrations],
    }
    result["machine"]["loadavg_start_end"] = os.getloadavg()
    out = args.out or RESULTS / f"auto_dtype-{'amx' if host.amx else 'no-amx'}.json"
    write_json(out, result)
    log(f"bf16/fp32 encode: {result['bf16_over_fp32_median']:.2f}x; written {out}")
    print(json.dumps({k: result[k] for k in ("median_docs_per_s", "bf16_over_fp32_median", "cosine_bf16_fp32")}))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
