"""Memory of ``llm2vec-rag serve --adapter NAME=DIR``: what each named adapter adds to the process.

Each ``NAME=DIR`` is its own encoder with the adapter merged into a full copy of the base (and,
as any model loaded with adapters, it runs on the transformers engine: no prepacked copy), so the
cost per adapter is about one copy of the base's weights. This measures it: for 0, 1 and 2 named adapters over the
default model, a fresh process loads them with the server's own loader, encodes one text with
every served model (which packs the weights) and reports its resident memory (VmRSS).

    .venv/bin/python benchmarks/serve_memory.py --dtype bfloat16 --dtype float32

Writes benchmarks/results/serve_memory.json.
"""
from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import REPO, machine_info, write_json  # noqa: E402

ADAPTER = REPO / "llm2vec_rag" / "weights" / "smollm2-135m" / "3-simcse2"  # any adapter of the default base
RESULTS = REPO / "benchmarks" / "results"

CHILD = r"""
import json, sys
from llm2vec_rag.integrations.server.loading import loader, plan_models

def rss_mb():
    with open("/proc/self/status") as fh:
        return next(int(line.split()[1]) / 1024 for line in fh if line.startswith("VmRSS"))

model, dtype, adapter, count = sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4])
before = rss_mb()
plan = plan_models(model, [f"a{i}={adapter}" for i in range(count)], dtype=dtype, device="cpu")
served = loader(plan)()
for encoder in served.models.values():
    encoder.encode(["one short text, so that every served model packs its weights"], show_progress_bar=False)
first = next(iter(served.models.values()))
params = sum(p.numel() * p.element_size() for p in first.model.parameters()) / 2**20
print(json.dumps({"named_adapters": count, "models": len(served.models), "rss_before_mb": round(before, 1),
                  "rss_mb": round(rss_mb(), 1), "weights_mb_per_model": round(params, 1),
                  "dtype": str(next(first.model.parameters()).dtype).removeprefix("torch."),
                  "engines": [str(getattr(e, "engine", "?")) for e in served.models.values()]}))
"""


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="smollm2-135m")
    parser.add_argument("--dtype", action="append", default=None, help="repeatable (default: bfloat16, float32)")
    parser.add_argument("--max-adapters", type=int, default=2)
    parser.add_argument("--out", type=Path, default=RESULTS / "serve_memory.json")
    args = parser.parse_args()
    runs = []
    for dtype in args.dtype or ["bfloat16", "float32"]:
        for count in range(args.max_adapters + 1):
            reply = subprocess.run([sys.executable, "-c", CHILD, args.model, dtype, str(ADAPTER), str(count)],
                                   capture_output=True, text=True, check=True, cwd=REPO)
            row = {"requested_dtype": dtype, **json.loads(reply.stdout.strip().splitlines()[-1])}
            print(json.dumps(row), file=sys.stderr)
            runs.append(row)
    summary = {}
    for dtype in args.dtype or ["bfloat16", "float32"]:
        rows = sorted((r for r in runs if r["requested_dtype"] == dtype), key=lambda r: r["named_adapters"])
        steps = [b["rss_mb"] - a["rss_mb"] for a, b in zip(rows, rows[1:])]
        summary[dtype] = {"rss_mb_by_named_adapters": [r["rss_mb"] for r in rows],
                          "added_mb_per_named_adapter": [round(s, 1) for s in steps]}
    write_json(args.out, {"command": "python benchmarks/serve_memory.py " + " ".join(sys.argv[1:]),
                          "when": time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime()), "model": args.model,
                          "adapter": str(ADAPTER.relative_to(REPO)), "machine": machine_info(), "runs": runs,
                          "summary": summary})
    print(json.dumps(summary, indent=1))


if __name__ == "__main__":
    main()
