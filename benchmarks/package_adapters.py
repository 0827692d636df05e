"""Copy trained adapters into the package as the embedded default's adapters (bf16 weights).

    python benchmarks/package_adapters.py runs/mntp-wikitext2 runs/simcse-wikitext2 \
        --dest llm2vec_rag/weights/smollm2-135m
    W=llm2vec_rag/weights/smollm2-135m; python benchmarks/package_adapters.py $W/1-mntp $W/2-simcse \
        runs/simcse2-wikitext2 --dest $W      # add a stage to the shipped ones

Each adapter directory is copied to DEST/<n>-<name>/ (name: the directory name up to its first
"-", after any "<n>-" prefix) with its config, card and README; the LoRA weights are stored
as bfloat16 (half the size; the model runs in bf16 or upcasts them on load).
Reports the largest change of the encoder's vectors this causes on a few texts (must stay tiny).
"""
from __future__ import annotations

import argparse
import json
import re
import shutil
import tempfile
from pathlib import Path

import torch
from safetensors.torch import load_file, save_file

KEEP = ("adapter_config.json", "training_card.json", "README.md")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("adapters", nargs="+", type=Path)
    ap.add_argument("--dest", type=Path, required=True)
    args = ap.parse_args()
    # sources may live in DEST (re-packaging the shipped adapters plus a new one): copy them out first
    staging = Path(tempfile.mkdtemp(prefix="package-adapters-"))
    names = [re.sub(r"^\d+-", "", src.name).split("-")[0] for src in args.adapters]  # "2-simcse" -> "simcse"
    sources = [staging / f"{n}-{src.name}" for n, src in enumerate(args.adapters)]
    for src, staged in zip(args.adapters, sources):
        shutil.copytree(src, staged, ignore=shutil.ignore_patterns("checkpoints"))
    if args.dest.exists():
        shutil.rmtree(args.dest)
    written = []
    for n, (src, name) in enumerate(zip(sources, names), 1):
        out = args.dest / f"{n}-{name}"
        out.mkdir(parents=True)
        for f in KEEP:
            if (src / f).is_file():
                shutil.copy2(src / f, out / f)
        weights = load_file(str(src / "adapter_model.safetensors"))
        save_file({k: v.to(torch.bfloat16).contiguous() for k, v in weights.items()},
                  str(out / "adapter_model.safetensors"), metadata={"format": "pt"})
        written.append(out)
        print(json.dumps({"adapter": str(src), "to": str(out),
                          "mb": round((out / "adapter_model.safetensors").stat().st_size / 1e6, 2)}))

    from llm2vec_rag import LLM2Vec

    texts = ["Antibiotics kill bacteria.", "A man is playing a guitar on stage.", "Rivers carry sediment to the sea."]
    full = LLM2Vec.from_pretrained("smollm2-135m-base", adapters=[str(a) for a in sources], dtype="float32")
    packed = LLM2Vec.from_pretrained("smollm2-135m-base", adapters=[str(a) for a in written], dtype="float32")
    a = full.encode(texts, normalize_embeddings=True)
    b = packed.encode(texts, normalize_embeddings=True)
    print(json.dumps({"min_cosine_fp32_vs_bf16_adapters": float((a * b).sum(1).min())}))
    shutil.rmtree(staging)


if __name__ == "__main__":
    main()
