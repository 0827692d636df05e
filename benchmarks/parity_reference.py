"""Vector parity with the reference ``llm2vec==0.2.3``, on the same SmolLM2-135M weights.

For 50 fixed inputs (half ``[instruction, text]`` pairs), every pooling mode,
bidirectional attention on and off, fp32: encode with our ``LLM2Vec`` and with
the reference (run in ``.venv-ref``, transformers 4.44), then compare per-text
cosine. The bar is min cosine >= 0.999 per configuration. The token ids and
pooled-token masks of both sides are compared too, so a difference can be
traced to tokenization or to the model.

    source .venv/bin/activate
    python benchmarks/parity_reference.py            # ~3 min on 2 cores

Writes benchmarks/reference/results/parity_reference.{json,md}; the large
vectors go to benchmarks/out/parity/ (ignored by git). Creates .venv-ref on
first use. See docs/parity.md for the results and the reference's quirks.
"""
from __future__ import annotations

import argparse
import json
import shutil
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import (  # noqa: E402
    OUT,
    RESULTS,
    ensure_reference_venv,
    export_reference_model,
    log,
    machine_info,
    row_cosines,
    run_reference,
    write_json,
)

POOLING_MODES = ["mean", "weighted_mean", "eos_token", "last_token", "bos_token"]
BAR = 0.999

SCIFACT = "Given a scientific claim, retrieve documents that support or refute the claim"
WIKI_QA = "Given a question, retrieve Wikipedia passages that answer the question"
WEB = "Given a web search query, retrieve relevant passages that answer the query"
FIQA = "Given a financial question, retrieve user replies that best answer the question"
STS = "Retrieve semantically similar text."
COVID = "Given a query on COVID-19, retrieve documents that answer the query"
STACK = "Given a question, retrieve detailed question descriptions from Stackexchange that are duplicates to the given question"
ARGS = "Given a claim, find documents that refute the claim"
SENTIMENT = "Classify the sentiment expressed in the given movie review text from the IMDB dataset"

PLAIN = [
    "Cells are the basic structural and functional unit of every living organism.",
    "The mitochondrion produces most of the chemical energy that powers a cell.",
    "Aircraft wings are shaped so that moving air generates lift.",
    "It rained all day.",
    "Bidirectional attention lets every token attend to every other token in the sequence.",
    "Rivers carry sediment from the mountains down to the sea, building deltas where they slow.",
    "The 2008 financial crisis began in the U.S. housing market and spread worldwide within months.",
    "\"Do not go gentle into that good night\" is a villanelle by Dylan Thomas, published in 1951.",
    "Photosynthesis converts light energy, water and carbon dioxide into glucose and oxygen.",
    "Paris is the capital of France.",
    "(Optional) Preheat the oven to 200 °C before you mix the dry ingredients.",
    "Zürich, São Paulo and Kraków are cities whose names contain non-ASCII letters.",
    "def add(a, b):\n    return a + b",
    "Vaccines train the immune system to recognise a pathogen without causing the disease itself. "
    "Most contain an inactivated or weakened form of the microbe, one of its surface proteins, or "
    "genetic instructions for making such a protein. After vaccination, memory B and T cells persist "
    "for years and respond quickly if the real pathogen appears.",
    "The transformer architecture replaced recurrence with self-attention. Each layer mixes "
    "information across positions with attention heads and then transforms each position with a "
    "feed-forward network. Because attention is permutation-invariant, position information is "
    "injected separately, for example with rotary position embeddings.",
    "Interest rates rose for the fourth consecutive quarter.",
    "A sonnet has fourteen lines; a haiku has three.",
    "Plate tectonics explains earthquakes, volcanoes and the slow drift of continents. The "
    "lithosphere is broken into plates that float on the softer asthenosphere beneath them, moving a "
    "few centimetres each year. Where plates meet, they collide, separate or slide past each other.",
    "Quantum computers use qubits, which can be in superpositions of 0 and 1.",
    "The patient presented with fever (39.2 °C), cough and shortness of breath for 3 days.",
    "Open-source software lets anyone read, modify and redistribute the code.",
    "1,200 participants were randomised to receive either the drug or a placebo for 12 weeks; the "
    "primary outcome was change in HbA1c. The drug reduced HbA1c by 0.8 percentage points more than "
    "placebo (95% CI 0.6-1.0), with more gastrointestinal side effects.",
    "Bees communicate the location of food through a waggle dance.",
    "The Great Wall of China is not visible to the naked eye from low Earth orbit.",
    "Sleep deprivation impairs attention, working memory and mood.",
]

PAIRS = [
    [SCIFACT, "0-dimensional biomaterials show inductive properties."],
    [SCIFACT, "ALDH1 expression is associated with poorer prognosis for breast cancer primary tumors."],
    [SCIFACT, "Vitamin D supplementation reduces the risk of fractures in elderly people."],
    [SCIFACT, "1 in 5 million in UK have abnormal PrP positivity."],
    [SCIFACT, "Antibiotics are effective against viral infections such as the common cold."],
    [WIKI_QA, "who wrote the novel one hundred years of solitude"],
    [WIKI_QA, "when did the berlin wall fall"],
    [WIKI_QA, "What is the boiling point of water at the top of Mount Everest?"],
    [WIKI_QA, "how many moons does jupiter have"],
    [WEB, "best way to learn python for data science"],
    [WEB, "symptoms of iron deficiency"],
    [WEB, "2024 olympics host city"],
    [WEB, "\"retrieval augmented generation\" explained"],
    [FIQA, "Should I pay off my mortgage early or invest the money in index funds?"],
    [FIQA, "How are capital gains taxed when I sell shares I held for less than a year?"],
    [STS, "A man is playing a guitar on stage."],
    [STS, "Two dogs are running through a snowy field."],
    [COVID, "what is the incubation period of the coronavirus"],
    [COVID, "Does wearing a mask reduce transmission of SARS-CoV-2 indoors?"],
    [STACK, "How do I undo the most recent local commits in Git?"],
    [STACK, "(Python) Why does my list change when I modify a copy of it?"],
    [ARGS, "Nuclear power is too dangerous to be part of a low-carbon energy mix."],
    [SENTIMENT, "I expected little from this film, yet it moved me to tears; the final act is "
     "superb and the lead actor has never been better."],
    [SENTIMENT, "Two hours of my life I will never get back. Wooden dialogue, a plot full of holes, and "
     "an ending that made no sense at all."],
    [SCIFACT, "Women with a higher birth weight are more likely to develop breast cancer later in life."],
]

INPUTS: list = [x for pair in zip(PLAIN, PAIRS) for x in pair]  # interleaved: batches mix both kinds
assert len(INPUTS) == 50, len(INPUTS)


def naive_export(good: Path) -> Path:
    """A control: the same export but with v5's ``rope_parameters`` only (4.44 then uses 10000)."""
    bad = good.parent / (good.name + "-naive-rope")
    if bad.exists():
        shutil.rmtree(bad)
    shutil.copytree(good, bad, symlinks=True)
    cfg = json.loads((bad / "config.json").read_text())
    cfg["rope_parameters"] = {"rope_theta": cfg.pop("rope_theta"), "rope_type": "default"}
    (bad / "config.json").write_text(json.dumps(cfg, indent=2))
    return bad


def reference_cached(script: str, job: dict, job_path: Path, threads: int, rerun: bool) -> dict:
    """Run the reference, or reuse the reply of an identical earlier job (same inputs, export, settings)."""
    reply_path = job_path.with_suffix(".reply.json")
    if not rerun and reply_path.is_file() and job_path.is_file() and json.loads(job_path.read_text()) == job:
        reply = json.loads(reply_path.read_text())
        outs = {r["name"]: r["out"] for r in job["runs"]}
        if all(Path(outs[r["name"]]).is_file() for r in reply["runs"] if r.get("ok")):
            log(f"reusing the reference reply {reply_path.name} (identical job; --rerun-reference to redo)")
            return reply
    return run_reference(script, job, job_path, threads=threads)


def ours_with_mask(enc, ids: list[int], mask: list[int], mode: str) -> np.ndarray:
    """Our model's hidden states for one unpadded input, pooled over a given mask (diagnostic)."""
    import torch

    from llm2vec_rag.pooling import pool

    ids_t = torch.tensor([ids])
    att = torch.ones_like(ids_t)
    with torch.inference_mode():
        hidden = enc.model(input_ids=ids_t, attention_mask=att,
                           position_ids=torch.arange(len(ids)).unsqueeze(0)).last_hidden_state
    return pool(hidden, torch.tensor([mask]), att, mode)[0].float().numpy()


def encode_ours(inputs: list, batch_size: int, threads: int) -> tuple[dict, dict, dict, dict]:
    import torch

    from llm2vec_rag import LLM2Vec
    from llm2vec_rag.instructions import tokenize_all

    torch.set_num_threads(threads)
    vectors, tokens, info, encoders = {}, {}, {}, {}
    for bidi in (True, False):
        enc = LLM2Vec.from_pretrained("smollm2-135m", dtype="float32", enable_bidirectional=bidi,
                                      pooling_mode="mean", max_length=512)
        info[f"bidi={bidi}"] = {"check": enc.check_bidirectional(), "repr": repr(enc),
                                "rope": getattr(enc.model.config, "rope_parameters", None)}
        for mode in POOLING_MODES:
            enc.pooling_mode = mode
            key = f"{mode}|{'bidi' if bidi else 'causal'}"
            t0 = time.perf_counter()
            vectors[key] = enc.encode(inputs, batch_size=batch_size, show_progress_bar=False)
            log(f"ours {key}: {time.perf_counter() - t0:.1f}s")
            toks = tokenize_all(enc.tokenizer, inputs, 512, append_eos=mode == "eos_token",
                                prepend_bos=mode == "bos_token")
            tokens[key] = [{"ids": t.ids, "mask": t.text_mask} for t in toks]
        encoders["bidi" if bidi else "causal"] = enc
    return vectors, tokens, info, encoders


def compare_tokens(ours: list[dict], ref: list[dict]) -> dict:
    ids_equal = [a["ids"] == b["ids"] for a, b in zip(ours, ref)]
    mask_equal = [a["ids"] == b["ids"] and a["mask"] == b["mask"] for a, b in zip(ours, ref)]
    return {
        "ids_equal": int(sum(ids_equal)),
        "masks_equal": int(sum(mask_equal)),
        "ids_differ_at": [i for i, ok in enumerate(ids_equal) if not ok],
        "masks_differ_at": [i for i, ok in enumerate(mask_equal) if not ok],
    }


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--batch-size", type=int, default=16, help="both sides (16: 50 inputs make 4 padded batches)")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--out", type=Path, default=RESULTS / "parity_reference.json")
    ap.add_argument("--rerun-reference", action="store_true",
                    help="run the reference even when an identical earlier job left its reply")
    ap.add_argument("--table-only", action="store_true", help="rewrite the .md table from the .json, run nothing")
    ap.add_argument("--published", action="store_true",
                    help="tiny published-layout checkpoints (-mntp + -supervised) per family instead of SmolLM2")
    args = ap.parse_args(argv)
    if args.published:
        return main_published(args)
    if args.table_only:
        md = markdown(json.loads(args.out.read_text(encoding="utf-8"))["rows"])
        args.out.with_suffix(".md").write_text(md, encoding="utf-8")
        print(md)
        return 0

    t_start = time.perf_counter()
    ensure_reference_venv()
    export = export_reference_model()
    work = OUT / "parity"
    work.mkdir(parents=True, exist_ok=True)
    inputs_path = work / "inputs.json"
    inputs_path.write_text(json.dumps(INPUTS, ensure_ascii=False, indent=1), encoding="utf-8")

    runs = []
    for bidi in (True, False):
        tag = "bidi" if bidi else "causal"
        for mode in POOLING_MODES:
            runs.append({"name": f"{mode}|{tag}", "pooling_mode": mode, "enable_bidirectional": bidi,
                         "dtype": "float32", "variant": "fixed", "tokens": True})
        for mode in ("eos_token", "bos_token"):  # the reference untouched, to show its quirks
            runs.append({"name": f"{mode}|{tag}|as-shipped", "pooling_mode": mode, "enable_bidirectional": bidi,
                         "dtype": "float32", "variant": "as-shipped", "tokens": True})
    for run in runs:
        run.update(inputs=str(inputs_path), out=str(work / f"ref-{run['name'].replace('|', '-')}.npy"))
    log(f"reference: {len(runs)} runs in {export}")
    reply = reference_cached("ref_encode.py", {"model_dir": str(export), "threads": args.threads,
                                               "max_length": 512, "batch_size": args.batch_size, "runs": runs},
                             work / "job.json", args.threads, args.rerun_reference)
    control_dir = naive_export(export)
    control_run = {"name": "mean|bidi|naive-rope-export", "pooling_mode": "mean", "enable_bidirectional": True,
                   "dtype": "float32", "variant": "fixed", "inputs": str(inputs_path),
                   "out": str(work / "ref-control-naive-rope.npy")}
    control = reference_cached("ref_encode.py", {"model_dir": str(control_dir), "threads": args.threads,
                                                 "max_length": 512, "batch_size": args.batch_size,
                                                 "runs": [control_run]}, work / "job-control.json",
                               args.threads, args.rerun_reference)

    ours, our_tokens, our_info, encoders = encode_ours(INPUTS, args.batch_size, args.threads)
    for key, vec in ours.items():
        np.save(work / f"ours-{key.replace('|', '-')}.npy", vec)

    rows = []
    by_name = {r["name"]: r for r in reply["runs"]}
    for run in runs + [control_run]:
        name = run["name"]
        r = by_name.get(name) or next(x for x in control["runs"] if x["name"] == name)
        key = "|".join(name.split("|")[:2])
        row = {"config": name, "pooling_mode": run["pooling_mode"], "bidirectional": run["enable_bidirectional"],
               "reference_variant": run["variant"] if "naive" not in name else "fixed, naive-rope export",
               "ok": r["ok"]}
        if not r["ok"]:
            row["error"] = r["error"]
            rows.append(row)
            continue
        ref_vec = np.load(run["out"])
        cos = row_cosines(ours[key], ref_vec)
        row.update(cos_min=float(cos.min()), cos_mean=float(cos.mean()), argmin=int(cos.argmin()),
                   passes=bool(cos.min() >= BAR), n=int(len(cos)),
                   max_abs_diff=float(np.abs(ours[key] - ref_vec).max()),
                   reference_model=r.get("model"))
        if "tokens" in r:
            row["tokens"] = compare_tokens(our_tokens[key], r["tokens"])
            same = [i for i in range(len(cos)) if i not in set(row["tokens"]["masks_differ_at"])]
            if same:
                row["same_input_cos_min"] = float(cos[same].min())
                row["same_input_cos_mean"] = float(cos[same].mean())
                row["same_input_passes"] = bool(cos[same].min() >= BAR)
            # where the inputs or pooled tokens differ: our model run on the reference's ids and mask
            diag = {}
            for i in row["tokens"]["masks_differ_at"]:
                v = ours_with_mask(encoders[key.split("|")[1]], r["tokens"][i]["ids"], r["tokens"][i]["mask"],
                                   run["pooling_mode"])
                diag[str(i)] = {
                    "cos_as_encoded": float(cos[i]),
                    "cos_with_reference_mask": float(row_cosines(v[None], ref_vec[i][None])[0]),
                    "ids_equal": i not in row["tokens"]["ids_differ_at"],
                    "ours_pooled_tokens": int(sum(our_tokens[key][i]["mask"])),
                    "reference_pooled_tokens": int(sum(r["tokens"][i]["mask"])),
                }
            if diag:
                row["mask_differences"] = diag
        rows.append(row)

    result = {
        "bar": BAR,
        "inputs": len(INPUTS),
        "pairs": len(PAIRS),
        "batch_size": args.batch_size,
        "dtype": "float32",
        "max_length": 512,
        "export_dir": str(export),
        "ours": our_info,
        "reference_meta": reply["meta"],
        "machine": machine_info(),
        "seconds": round(time.perf_counter() - t_start, 1),
        "command": "python benchmarks/parity_reference.py",
        "rows": rows,
    }
    write_json(args.out, result)
    md = markdown(rows)
    args.out.with_suffix(".md").write_text(md, encoding="utf-8")
    print(md)
    headline = [r for r in rows if r["reference_variant"] == "fixed"]
    failed = [r["config"] for r in headline if not r.get("passes")]
    failed_same = [r["config"] for r in headline if not r.get("same_input_passes")]
    log(f"{len(headline) - len(failed)}/{len(headline)} configurations pass min cosine >= {BAR} on all texts"
        + (f"; failing: {failed}" if failed else ""))
    log(f"{len(headline) - len(failed_same)}/{len(headline)} pass on the texts where both sides pool the same tokens"
        + (f"; failing: {failed_same}" if failed_same else ""))
    return 0 if not failed_same else 1


# ----------------------------------------------------------------- published layouts
PUBLISHED_FAMILIES = ("llama", "mistral", "gemma", "qwen2")  # the reference's bidirectional classes
# (name, settings): every family gets these; the instruct templates run on the llama weights
PUBLISHED_RUNS = [
    ("mntp+supervised", {}),
    ("mntp only", {"supervised": False}),
    ("skip_instruction=False", {"skip_instruction": False}),
    ("doc_max_length=24", {"doc_max_length": 24}),
    ("causal", {"enable_bidirectional": False}),
    ("bf16", {"dtype": "bfloat16"}),
]
TEMPLATE_LAYOUTS = ("llama-llama3instruct", "llama-mistralinstruct")
SEPARATOR = "!@#$%^&*()"


def reference_text_count(enc, item, doc_max_length: int) -> int:
    """How many trailing tokens the reference pools (``skip_instruction``): the text after its
    separator, template suffix included, tokenized alone; ours counts from character offsets."""
    from llm2vec_rag.reference import cut_to_words

    instruction, text = ("", item) if isinstance(item, str) else item
    text = cut_to_words(enc.tokenizer, text, doc_max_length, enc.max_length)
    joined = f"{instruction.strip()} {SEPARATOR}{text}" if instruction else f"{SEPARATOR}{text}"
    if enc.chat_template is not None:
        joined = enc.chat_template.prefix + joined.strip() + enc.chat_template.suffix
    after = joined.split(SEPARATOR)[1]
    return len(enc.tokenizer(after, add_special_tokens=False, truncation=True, max_length=enc.max_length)["input_ids"])


def our_text_count(enc, item) -> int:
    from llm2vec_rag.instructions import tokenize_all

    if enc.doc_max_length is not None:  # the same word cut both sides apply
        from llm2vec_rag.reference import cut_to_words

        cut = cut_to_words(enc.tokenizer, item if isinstance(item, str) else item[1], enc.doc_max_length,
                           enc.max_length)
        item = cut if isinstance(item, str) else [item[0], cut]
    tok = tokenize_all(enc.tokenizer, [item], enc.max_length, pool_all=not enc.skip_instruction,
                       template=enc.chat_template)[0]
    return int(sum(tok.text_mask))


def main_published(args) -> int:
    """Ours vs the reference on tiny published layouts: both load ``-mntp`` + ``-supervised`` the
    reference's way (``from_pretrained(mntp, peft_model_name_or_path=supervised, ...)``)."""
    import torch

    from llm2vec_rag import LLM2Vec

    t_start = time.perf_counter()
    ensure_reference_venv()
    work = OUT / "parity-published"
    work.mkdir(parents=True, exist_ok=True)
    inputs_path = work / "inputs.json"
    inputs_path.write_text(json.dumps(INPUTS, ensure_ascii=False, indent=1), encoding="utf-8")
    root = work / "models"
    runs = []
    for layout in [*PUBLISHED_FAMILIES, *TEMPLATE_LAYOUTS]:
        family = layout.split("-")[0]
        for label, settings in (PUBLISHED_RUNS if layout in PUBLISHED_FAMILIES else [("mntp+supervised", {})]):
            mntp = root / (f"{family}-mntp" if layout == family else f"llama-mntp-{layout.split('-', 1)[1]}")
            run = {"name": f"{layout}|{label}", "layout": layout, "mntp": str(mntp),
                   "supervised": str(root / f"{family}-mntp-supervised") if settings.get("supervised", True) else None,
                   "pooling_mode": "mean", "skip_instruction": settings.get("skip_instruction", True),
                   "doc_max_length": settings.get("doc_max_length", 400), "dtype": settings.get("dtype", "float32"),
                   "enable_bidirectional": settings.get("enable_bidirectional", True)}
            run["out"] = str(work / f"ref-{run['name'].replace('|', '-').replace(' ', '_').replace('+', '_')}.npy")
            runs.append(run)
    log(f"reference: building {len(PUBLISHED_FAMILIES)} families + {len(TEMPLATE_LAYOUTS)} template copies")
    common = {"root": str(root), "inputs": str(inputs_path), "threads": args.threads, "max_length": 512,
              "batch_size": args.batch_size}
    built = run_reference("ref_published.py", {**common, "build": True, "runs": []}, work / "job-build.json",
                          threads=args.threads)
    torch.set_num_threads(args.threads)
    ours_by_name, encoders = {}, {}
    for run in runs:
        enc = LLM2Vec.from_pretrained(run["mntp"], peft_model_name_or_path=run["supervised"],
                                      enable_bidirectional=run["enable_bidirectional"],
                                      torch_dtype=getattr(torch, run["dtype"]), pooling_mode=run["pooling_mode"],
                                      skip_instruction=run["skip_instruction"], doc_max_length=run["doc_max_length"])
        ours_by_name[run["name"]] = enc.encode(INPUTS, batch_size=args.batch_size, convert_to_numpy=True)
        encoders[run["name"]] = enc
    # our save(), read by the reference: LLM2Vec.from_pretrained(saved_dir) and nothing else
    save_runs = []
    for family in PUBLISHED_FAMILIES:
        name = f"{family}|mntp+supervised"
        saved_dir = encoders[name].save(work / "saved" / family)
        run = {"name": f"{family}|ours saved, reference loads", "layout": family, "mntp": str(saved_dir),
               "supervised": None, "pooling_mode": "mean", "skip_instruction": True, "doc_max_length": 400,
               "dtype": "float32", "enable_bidirectional": True, "out": str(work / f"ref-saved-{family}.npy"),
               "ours_from": name}
        save_runs.append(run)
    log(f"reference: {len(runs) + len(save_runs)} runs")
    reply = run_reference("ref_published.py", {**common, "runs": runs + save_runs}, work / "job.json",
                          threads=args.threads)
    reply["meta"]["layouts"] = built.get("layouts")
    by_name = {r["name"]: r for r in reply["runs"]}

    def reference_is_causal(family: str) -> bool:
        """The reference's bidirectional vectors equal its own causal ones (its Qwen2BiModel under 4.44)."""
        a, b = by_name.get(f"{family}|mntp+supervised"), by_name.get(f"{family}|causal")
        if not (a and b and a["ok"] and b["ok"]):
            return False
        c = f"{family}|causal"
        return bool(row_cosines(np.load(runs[[r["name"] for r in runs].index(c)]["out"]),
                                np.load(runs[[r["name"] for r in runs].index(f"{family}|mntp+supervised")]["out"])
                                ).min() > 1 - 1e-9)

    causal_reference = {f: reference_is_causal(f) for f in PUBLISHED_FAMILIES}
    rows = []
    for run in runs + save_runs:
        r = by_name[run["name"]]
        row = {"config": run["name"], "layout": run["layout"], "dtype": run["dtype"], "ok": r["ok"]}
        if not r["ok"]:
            row["error"] = r["error"]
            rows.append(row)
            continue
        key = run.get("ours_from", run["name"])
        enc, ours = encoders[key], ours_by_name[key]
        ref = np.load(run["out"])
        cos = row_cosines(ours, ref)
        if run["enable_bidirectional"] and causal_reference.get(run["layout"]):
            row["reference_causal"] = True  # documented: compare with our causal encoder too
            causal = LLM2Vec.from_pretrained(run["mntp"], peft_model_name_or_path=run["supervised"],
                                             enable_bidirectional=False, torch_dtype=getattr(torch, run["dtype"]),
                                             skip_instruction=run["skip_instruction"],
                                             doc_max_length=run["doc_max_length"])
            row["cos_min_vs_our_causal"] = float(row_cosines(
                causal.encode(INPUTS, batch_size=args.batch_size, convert_to_numpy=True), ref).min())
        docs = [i for i, x in enumerate(INPUTS) if isinstance(x, str)]
        pairs = [i for i, x in enumerate(INPUTS) if not isinstance(x, str)]
        same = [i for i in range(len(INPUTS))
                if not run["skip_instruction"]
                or reference_text_count(enc, INPUTS[i], run["doc_max_length"]) == our_text_count(enc, INPUTS[i])]
        row.update({
            "engine": enc.engine, "reference_class": r.get("model_class"), "template": enc.chat_template is not None,
            "docs_cos_min": float(cos[docs].min()), "pairs_cos_min": float(cos[pairs].min()),
            "same_tokens": len(same), "n": len(INPUTS),
            "same_tokens_cos_min": float(cos[same].min()) if same else None,
            "differing_pairs": [i for i in pairs if i not in same], "differing_docs": [i for i in docs if i not in same],
            "docs_pass": bool(cos[[i for i in docs if i in same]].min() >= BAR) if [i for i in docs if i in same] else None,
        })
        rows.append(row)
        log(f"{run['name']}: docs min {row['docs_cos_min']:.6f}, pairs min {row['pairs_cos_min']:.6f}, "
            f"same-token min {row['same_tokens_cos_min']}")
    result = {"bar": BAR, "inputs": len(INPUTS), "batch_size": args.batch_size, "max_length": 512,
              "reference_meta": reply["meta"], "machine": machine_info(),
              "seconds": round(time.perf_counter() - t_start, 1),
              "command": "python benchmarks/parity_reference.py --published", "rows": rows}
    out = RESULTS / "parity_published.json"
    write_json(out, result)
    md = markdown_published(rows)
    out.with_suffix(".md").write_text(md, encoding="utf-8")
    print(md)
    failed = [r["config"] for r in rows
              if not r.get("ok") or (r.get("same_tokens_cos_min", 0) < BAR and not r.get("reference_causal"))]
    log(f"{len(rows) - len(failed)}/{len(rows)} configurations reach cosine >= {BAR} wherever both sides pool "
        f"the same tokens" + (f"; failing: {failed}" if failed else ""))
    return 0 if not failed else 1


def markdown_published(rows: list[dict]) -> str:
    lines = ["| layout | configuration | dtype | docs: min cos | pairs: min cos | texts pooling the same tokens "
             "| min cos there | texts where the reference pools one token more or less |",
             "|---|---|---|---|---|---|---|---|"]
    for r in rows:
        layout, label = r["config"].split("|")
        if not r["ok"]:
            lines.append(f"| {layout} | {label} | {r['dtype']} | fails: `{r['error'][:80]}` | - | - | - | - |")
            continue
        diff = r["differing_pairs"] + r["differing_docs"]
        note = (f" (the reference is causal here; vs our causal: {r['cos_min_vs_our_causal']:.6f})"
                if r.get("reference_causal") else "")
        lines.append(f"| {layout} | {label}{note} | {r['dtype']} | {r['docs_cos_min']:.6f} | {r['pairs_cos_min']:.6f} "
                     f"| {r['same_tokens']}/{r['n']} | {r['same_tokens_cos_min']:.6f} "
                     f"| {len(diff)} ({len(r['differing_pairs'])} pairs, {len(r['differing_docs'])} documents) |")
    return "\n".join(lines) + "\n"


def markdown(rows: list[dict]) -> str:
    lines = ["| pooling | attention | reference | min cos | mean cos | worst text | ids equal | masks equal "
             "| min cos, texts pooling the same tokens | >= 0.999 (all / same tokens) | differing texts: cos with the reference's mask |",
             "|---|---|---|---|---|---|---|---|---|---|---|"]
    for r in rows:
        attn = "bidirectional" if r["bidirectional"] else "causal"
        if not r["ok"]:
            lines.append(f"| {r['pooling_mode']} | {attn} | {r['reference_variant']} | - | - | - | - | - | - | "
                         f"fails: `{r['error'][:80]}` | - |")
            continue
        tok = r.get("tokens") or {}
        n = r["n"]
        same = f"1 − {1 - r['same_input_cos_min']:.1e}" if "same_input_cos_min" in r else "-"
        same_ok = ("yes" if r["same_input_passes"] else "no") if "same_input_passes" in r else "-"
        md = r.get("mask_differences") or {}
        if not md:
            diag = "-"
        elif len(md) <= 3:
            diag = ", ".join(f"#{i}: {d['cos_as_encoded']:.4f} → {d['cos_with_reference_mask']:.6f}" for i, d in md.items())
        else:
            diag = (f"{len(md)} texts: min {min(d['cos_as_encoded'] for d in md.values()):.4f} → "
                    f"{min(d['cos_with_reference_mask'] for d in md.values()):.6f}")
        lines.append(
            f"| {r['pooling_mode']} | {attn} | {r['reference_variant']} | {r['cos_min']:.6f} | {r['cos_mean']:.6f} "
            f"| {r['argmin']} | {tok.get('ids_equal', '-')}/{n} | {tok.get('masks_equal', '-')}/{n} "
            f"| {same} | {'yes' if r['passes'] else 'no'} / {same_ok} | {diag} |")
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    sys.exit(main())
