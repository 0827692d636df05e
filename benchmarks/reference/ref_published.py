"""Tiny published-layout LLM2Vec checkpoints, built and encoded by the reference stack (``llm2vec==0.2.3``).

Run inside the reference venv by ``benchmarks/parity_reference.py --published``::

    $LLM2VEC_REF_VENV/bin/python benchmarks/reference/ref_published.py JOB.json REPLY.json

``build``: for each family (llama, mistral, gemma, qwen2: the reference's bidirectional classes) a
random tiny causal LM saved by transformers 4.44 (``<family>-base``), a ``<family>-mntp`` directory
laid out like the McGill-NLP repositories (the base's ``config.json`` and tokenizer beside a LoRA
adapter whose ``adapter_config.json`` names the base), and ``<family>-mntp-supervised`` (a second
LoRA trained on base + MNTP, naming the mntp directory). Two more ``llama-mntp`` copies carry an
instruct checkpoint's ``_name_or_path`` so the reference applies its chat templates.
``runs``: ``LLM2Vec.from_pretrained(mntp, peft_model_name_or_path=supervised, ...)`` then ``encode``.
Both sides read the same files, so any difference is in the code, not the weights.
"""
from __future__ import annotations

import json
import shutil
import sys
import time
import traceback
from pathlib import Path

import numpy as np
import torch

COMMON = dict(vocab_size=1024, hidden_size=64, intermediate_size=128, num_hidden_layers=2, num_attention_heads=4,
              num_key_value_heads=2, max_position_embeddings=1024, pad_token_id=0, bos_token_id=1, eos_token_id=2)
FAMILIES = {"llama": ("LlamaConfig", {}), "mistral": ("MistralConfig", {"sliding_window": None}),
            "gemma": ("GemmaConfig", {"head_dim": 16, "hidden_activation": "gelu_pytorch_tanh"}), "qwen2": ("Qwen2Config", {})}
TEMPLATE_NAMES = {"llama3instruct": "meta-llama/Meta-Llama-3-8B-Instruct",
                  "mistralinstruct": "mistralai/Mistral-7B-Instruct-v0.2"}


def log(msg: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] ref: {msg}", file=sys.stderr, flush=True)


def tokenizer(texts: list[str]):
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    tok = Tokenizer(models.BPE(unk_token="<unk>"))
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=COMMON["vocab_size"], special_tokens=["<pad>", "<s>", "</s>", "<unk>"],
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet(), show_progress=False)
    tok.train_from_iterator(texts * 3, trainer=trainer)
    from tokenizers import processors

    tok.post_processor = processors.TemplateProcessing(single="<s> $A", pair="<s> $A $B", special_tokens=[("<s>", 1)])
    return PreTrainedTokenizerFast(tokenizer_object=tok, pad_token="<pad>", bos_token="<s>", eos_token="</s>",
                                   unk_token="<unk>", model_input_names=["input_ids", "attention_mask"])


def lora(model, out: Path, seed: int, base_ref: str, targets: list[str]) -> None:
    from peft import LoraConfig, get_peft_model

    torch.manual_seed(seed)
    peft_model = get_peft_model(model, LoraConfig(r=4, lora_alpha=8, target_modules=targets))
    with torch.no_grad():
        for name, p in peft_model.named_parameters():
            if "lora_B" in name:
                p.normal_(0, 0.05)
    peft_model.save_pretrained(str(out))
    cfg = json.loads((out / "adapter_config.json").read_text())
    cfg["base_model_name_or_path"] = base_ref
    (out / "adapter_config.json").write_text(json.dumps(cfg, indent=2))


def build(root: Path, texts: list[str]) -> dict:
    import transformers
    from peft import PeftModel
    from transformers import AutoModel, AutoModelForCausalLM

    root.mkdir(parents=True, exist_ok=True)
    tok = tokenizer(texts)
    made = {}
    for i, (family, (cls_name, extra)) in enumerate(FAMILIES.items()):
        base, mntp, sup = root / f"{family}-base", root / f"{family}-mntp", root / f"{family}-mntp-supervised"
        for d in (base, mntp, sup):
            shutil.rmtree(d, ignore_errors=True)
        torch.manual_seed(100 + i)
        config = getattr(transformers, cls_name)(**{**COMMON, **extra})
        AutoModelForCausalLM.from_config(config).save_pretrained(str(base), safe_serialization=True)
        tok.save_pretrained(str(base))
        targets = ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"]
        lora(AutoModel.from_pretrained(str(base)), mntp, seed=1, base_ref=str(base), targets=targets)
        for name in ("config.json", "tokenizer.json", "tokenizer_config.json", "special_tokens_map.json"):
            shutil.copy(base / name, mntp / name)
        merged = PeftModel.from_pretrained(AutoModel.from_pretrained(str(base)), str(mntp)).merge_and_unload()
        lora(merged, sup, seed=2, base_ref=str(mntp), targets=targets)
        made[family] = {"base": str(base), "mntp": str(mntp), "supervised": str(sup)}
    for tag, name in TEMPLATE_NAMES.items():  # the same llama weights under an instruct checkpoint's name
        copy = root / f"llama-mntp-{tag}"
        shutil.rmtree(copy, ignore_errors=True)
        shutil.copytree(root / "llama-mntp", copy)
        cfg = json.loads((copy / "config.json").read_text())
        cfg["_name_or_path"] = name
        (copy / "config.json").write_text(json.dumps(cfg, indent=2))
        made[f"llama-{tag}"] = {"base": made["llama"]["base"], "mntp": str(copy),
                                "supervised": made["llama"]["supervised"]}
    return made


def encode(job: dict, run: dict, inputs: list) -> dict:
    from llm2vec import LLM2Vec

    kwargs = {"pooling_mode": run["pooling_mode"], "max_length": job["max_length"],
              "skip_instruction": run["skip_instruction"], "doc_max_length": run["doc_max_length"],
              "torch_dtype": getattr(torch, run["dtype"])}
    l2v = LLM2Vec.from_pretrained(run["mntp"], peft_model_name_or_path=run.get("supervised"),
                                  enable_bidirectional=run["enable_bidirectional"], **kwargs)
    pairs = [x if isinstance(x, list) else ["", x] for x in inputs]  # the reference's "no instruction"
    t0 = time.perf_counter()
    vecs = l2v.encode(pairs, batch_size=job["batch_size"], show_progress_bar=False, convert_to_numpy=True,
                      device="cpu")
    np.save(run["out"], np.asarray(vecs, dtype=np.float32))
    return {"seconds": round(time.perf_counter() - t0, 2), "model_class": type(l2v.model).__name__,
            "name_or_path": l2v.model.config._name_or_path}


def main() -> int:
    job_path, reply_path = Path(sys.argv[1]), Path(sys.argv[2])
    job = json.loads(job_path.read_text())
    torch.set_num_threads(int(job.get("threads", 2)))
    inputs = json.loads(Path(job["inputs"]).read_text())
    reply: dict = {"meta": {}, "runs": []}
    import llm2vec
    import peft
    import transformers

    reply["meta"] = {"llm2vec": getattr(llm2vec, "__version__", "0.2.3"), "transformers": transformers.__version__,
                     "peft": peft.__version__, "torch": torch.__version__}
    if job.get("build"):
        texts = [t for x in inputs for t in (x if isinstance(x, list) else [x])]
        reply["layouts"] = build(Path(job["root"]), texts)
        log(f"built {len(reply['layouts'])} layouts in {job['root']}")
    for run in job.get("runs", []):
        try:
            info = encode(job, run, inputs)
            reply["runs"].append({"name": run["name"], "ok": True, **info})
            log(f"{run['name']}: {info['seconds']}s")
        except Exception as exc:  # reported, not fatal: one failing configuration is a result
            reply["runs"].append({"name": run["name"], "ok": False, "error": f"{type(exc).__name__}: {exc}",
                                  "traceback": traceback.format_exc()[-2000:]})
            log(f"{run['name']} failed: {exc}")
    reply_path.write_text(json.dumps(reply, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
