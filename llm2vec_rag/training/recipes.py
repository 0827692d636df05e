"""The three LLM2Vec training recipes over the shared :class:`Trainer`.

>>> from llm2vec_rag.training import MNTPConfig, train_mntp            # doctest: +SKIP
>>> train_mntp(MNTPConfig(data="wiki.txt.gz", output_dir="runs/mntp", steps=200))  # doctest: +SKIP
"""
from __future__ import annotations

import hashlib
import json
import os
from collections import Counter
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import torch

from ..encoder import DEFAULT_QUERY_INSTRUCTION, forward_batch
from ..instructions import tokenize_all
from .config import MNTPConfig, SimCSEConfig, SupervisedConfig, TrainConfig, WeakConfig
from .data import (
    BatchOrder,
    Pair,
    TrainingDataError,
    is_beir_folder,
    pack_tokens,
    read_pairs_beir,
    read_pairs_jsonl,
    read_texts,
)
from .gradcache import cached_backward, plain_loss
from .losses import cosent, info_nce
from .mntp import mask_tokens, mntp_loss, resolve_mask_token
from .trainer import Trainer, TrainingError, TrainingModel, load_training_model, total_steps, use_bf16

Log = Callable[[str], None]


def _setup(config: TrainConfig) -> None:
    config.validate()
    if config.threads:
        torch.set_num_threads(config.threads)


def _data_id(path: str) -> dict[str, Any]:
    p = Path(path).expanduser()
    info: dict[str, Any] = {"path": str(path)}
    if p.is_file() and p.stat().st_size < 512 * 2**20:
        h = hashlib.sha256()
        with open(p, "rb") as fh:
            for block in iter(lambda: fh.read(1 << 20), b""):
                h.update(block)
        info["sha256"] = h.hexdigest()[:16]
    return info


def encoder_view(tm: TrainingModel, pooling_mode: str = "mean", max_length: int = 512):
    """An :class:`LLM2Vec` over the model being trained (shares its weights; puts it in eval mode)."""
    from ..encoder import LLM2Vec

    return LLM2Vec(tm.model, tm.tokenizer, pooling_mode=pooling_mode, max_length=max_length,
                   enable_bidirectional=True, name=f"training:{tm.base_description.get('model')}")


def make_evaluator(config: TrainConfig, tm: TrainingModel, pooling_mode: str = "mean",
                   instruction: str | None = None) -> Callable[[], dict[str, float]] | None:
    """Evaluation every ``eval_every`` steps on each --eval-data: an STS folder (Spearman) or a BEIR
    folder (nDCG@10; ``instruction`` for its queries, None: the dataset's own)."""
    sets = config.eval_sets()
    if not sets:
        return None
    bf16 = use_bf16(config, tm.device)
    limit = config.eval_max_items or None
    evaluators: list[Callable[[], dict[str, float]]] = []
    for folder, split in sets:
        if is_beir_folder(folder):
            from ..evaluation.retrieval import load_beir, run_retrieval_eval, sample_queries

            if config.eval_max_queries:
                beir = sample_queries(load_beir(folder, split=split), config.eval_max_queries, limit)
            else:
                beir = load_beir(folder, split=split, max_docs=limit)
            key = f"{beir.name}_{beir.split}" + (f"_q{config.eval_max_queries}" if config.eval_max_queries else "")

            def evaluate_beir(beir=beir, key=key) -> dict[str, float]:
                with torch.autocast(tm.device.type, dtype=torch.bfloat16, enabled=bf16):
                    r = run_retrieval_eval(encoder_view(tm, pooling_mode), beir, instruction=instruction,
                                           show_progress=False, use_cache=False)
                return {f"{key}_ndcg@10": r["ndcg@10"]}

            evaluators.append(evaluate_beir)
            continue
        from ..evaluation.sts import evaluate_sts, limit_pairs, load_sts

        sts = load_sts(folder, split=split)
        if limit and not config.eval_max_queries:  # with a query sample, the cap is the BEIR documents'
            sts = limit_pairs(sts, limit)

        def evaluate_sts_set(sts=sts) -> dict[str, float]:
            with torch.autocast(tm.device.type, dtype=torch.bfloat16, enabled=bf16):
                r = evaluate_sts(encoder_view(tm, pooling_mode), sts)
            return {f"{sts.name}_{sts.split}_spearman": r["spearman"]}

        evaluators.append(evaluate_sts_set)

    def evaluate() -> dict[str, float]:
        figures: dict[str, float] = {}
        for run in evaluators:
            figures.update(run())
        return figures

    return evaluate


# --------------------------------------------------------------------------- MNTP
def train_mntp(config: MNTPConfig, log: Log | None = None, return_model: bool = False) -> Any:
    """Masked next-token prediction with LoRA on a text corpus; returns the adapter card
    (and the trained :class:`TrainingModel` with ``return_model``)."""
    _setup(config)
    log = log or (lambda m: None)
    texts = read_texts(config.data, unit="line")
    tm = load_training_model(config, with_lm_head=True)
    tok = tm.tokenizer
    mask_token, mask_id = resolve_mask_token(tok, config.mask_token or None)
    blocks = pack_tokens(tok, texts, config.max_length)
    log(f"MNTP: {len(texts)} texts -> {len(blocks)} blocks of {config.max_length} tokens; mask token {mask_token!r}")
    order = BatchOrder(len(blocks), config.batch_size, config.seed)
    special = set(tok.all_special_ids)
    assert tm.lm_head is not None
    vocab = int(tm.lm_head.weight.shape[0])
    device = tm.device

    def step_loss(micro: int) -> torch.Tensor:
        ids = torch.from_numpy(blocks[order.batch(micro)])
        gen = torch.Generator().manual_seed(config.seed * 1_000_003 + micro)
        masked, labels = mask_tokens(ids, mask_id, special, vocab, config.mask_probability, gen)
        attention = torch.ones_like(masked)
        out = tm.model(input_ids=masked.to(device), attention_mask=attention.to(device))
        return mntp_loss(out.last_hidden_state, labels.to(device), tm.lm_head)

    steps = total_steps(config, len(blocks), config.batch_size)
    summary = {**_data_id(config.data), "texts": len(texts), "blocks": len(blocks), "block_tokens": config.max_length,
               "mask_token": mask_token, "mask_probability": config.mask_probability}
    trainer = Trainer(config, tm, step_loss, steps, config.batch_size * config.grad_accum, summary,
                      make_evaluator(config, tm), log)
    card = trainer.train()
    return (card, tm) if return_model else card


# --------------------------------------------------------------------------- SimCSE
def train_simcse(config: SimCSEConfig, log: Log | None = None, return_model: bool = False) -> Any:
    """Unsupervised SimCSE with LoRA: two dropout views per text, in-batch negatives."""
    _setup(config)
    log = log or (lambda m: None)
    texts = list(dict.fromkeys(read_texts(config.data, unit=config.unit, min_words=config.min_words)))
    tm = load_training_model(config, attention_dropout=config.attention_dropout)
    log(f"SimCSE: {len(texts)} distinct texts; attention dropout {config.attention_dropout}")
    order = BatchOrder(len(texts), config.batch_size, config.seed)
    pad = int(tm.tokenizer.pad_token_id)

    def step_loss(micro: int) -> torch.Tensor:
        items = [texts[i] for i in order.batch(micro)]
        tokens = tokenize_all(tm.tokenizer, items, config.max_length)
        vectors = forward_batch(tm.model, tokens + tokens, pad, config.pooling_mode, tm.device)
        n = len(items)
        return info_nce(vectors[:n], vectors[n:], scale=config.scale)

    steps = total_steps(config, len(texts), config.batch_size)
    summary = {**_data_id(config.data), "texts": len(texts), "unit": config.unit}
    trainer = Trainer(config, tm, step_loss, steps, config.batch_size * config.grad_accum, summary,
                      make_evaluator(config, tm, config.pooling_mode), log)
    card = trainer.train()
    return (card, tm) if return_model else card


# --------------------------------------------------------------------------- supervised
def _instruction_for(config: SupervisedConfig) -> str:
    from ..evaluation.retrieval import DATASET_INSTRUCTIONS

    if config.instruction.strip().lower() == "none":
        return ""
    if config.instruction:
        return config.instruction
    name = Path(config.data).expanduser().resolve().name.lower()
    return DATASET_INSTRUCTIONS.get(name, DEFAULT_QUERY_INSTRUCTION)


def mine_negatives(tm: TrainingModel, pairs: list[Pair], corpus: dict[str, str], instruction: str, k: int,
                   skip: int, pooling_mode: str, max_length: int, bf16: bool, show_progress: bool) -> int:
    """Give each pair ``k`` hard negatives: the corpus documents the current model ranks highest for
    its query, after skipping the ``skip`` best non-positives. Returns how many negatives were added."""
    encoder = encoder_view(tm, pooling_mode, max_length)
    ids = list(corpus)
    positives: dict[str, set[str]] = {}
    for p in pairs:
        positives.setdefault(p.query, set()).add(p.positive_id)
    queries = list(positives)
    with torch.autocast(tm.device.type, dtype=torch.bfloat16, enabled=bf16):
        docs = encoder.encode_documents([corpus[i] for i in ids], show_progress_bar=show_progress,
                                        normalize_embeddings=True)
        qv = encoder.encode_queries(queries, instruction=instruction, show_progress_bar=show_progress,
                                    normalize_embeddings=True)
    tm.model.train()
    want = k + skip + max(len(v) for v in positives.values())
    scores = np.asarray(qv) @ np.asarray(docs).T
    top = np.argsort(-scores, axis=1)[:, : min(want, len(ids))]
    mined: dict[str, list[str]] = {}
    for q, row in zip(queries, top):
        found = [ids[j] for j in row if ids[j] not in positives[q]]
        mined[q] = found[skip : skip + k]
    added = 0
    for p in pairs:
        extra = [corpus[d] for d in mined[p.query]]
        p.negatives = [*p.negatives, *extra]
        added += len(extra)
    return added


def train_supervised(config: SupervisedConfig, log: Log | None = None, return_model: bool = False) -> Any:
    """Contrastive LoRA training on (query, positive, hard negatives) with in-batch negatives."""
    _setup(config)
    log = log or (lambda m: None)
    corpus: dict[str, str] | None = None
    beir = is_beir_folder(config.data)
    if beir:
        pairs, corpus = read_pairs_beir(config.data, config.split)
    elif Path(config.data).expanduser().is_dir():
        raise TrainingDataError(f"{config.data} is a folder but not BEIR (corpus.jsonl + queries.jsonl + qrels/)")
    else:
        pairs = read_pairs_jsonl(config.data)
    return fit_pairs(config, pairs, _instruction_for(config), log, return_model, corpus=corpus, beir=beir)


def fit_pairs(config: SupervisedConfig, pairs: list[Pair], instruction: str, log: Log, return_model: bool = False,
              corpus: dict[str, str] | None = None, beir: bool = False,
              data_summary: dict[str, Any] | None = None) -> Any:
    """The contrastive training behind ``train supervised`` and ``train weak``: LoRA on ``pairs``."""
    tm = load_training_model(config)
    if config.mine_negatives:
        if corpus is None:  # the pool of documents the file itself names
            texts = list(dict.fromkeys([t for p in pairs for t in (p.positive, *p.negatives)]))
            corpus = {t: t for t in texts}
        added = mine_negatives(tm, pairs, corpus, instruction, config.mine_negatives, config.mine_skip,
                               config.pooling_mode, config.max_length, use_bf16(config, tm.device),
                               not config.quiet)
        log(f"mined {added} hard negatives over {len(corpus)} documents")
    with_negs = sum(1 for p in pairs if p.negatives)
    scored = sum(1 for p in pairs if p.score is not None)
    by_source = dict(sorted(Counter(p.source or "-" for p in pairs).items()))
    log(f"{config.recipe}: {len(pairs)} pairs ({with_negs} with hard negatives, {scored} scored); "
        f"instruction {instruction!r}" + (f"; sources {by_source}" if len(by_source) > 1 else ""))
    small = [name for name, count in by_source.items() if count < config.batch_size]
    if small and len(by_source) > 1 and not config.mix_sources:
        log(f"warning: sources with fewer pairs than a batch of {config.batch_size} are left out: "
            f"{', '.join(small)} (lower --batch-size or pass --mix-sources)")
    order = BatchOrder(len(pairs), config.batch_size, config.seed, groups=[p.positive_id for p in pairs],
                       sources=None if config.mix_sources else [p.source for p in pairs])
    pad = int(tm.tokenizer.pad_token_id)

    def embed(items):
        return forward_batch(tm.model, items, pad, config.pooling_mode, tm.device)

    def step_loss(micro: int) -> torch.Tensor:
        batch = [pairs[i] for i in order.batch(micro)]
        rng = np.random.default_rng([config.seed, micro])
        ranked = [p for p in batch if p.score is None]  # positives: InfoNCE with in-batch + hard negatives
        graded = [p for p in batch if p.score is not None]  # scored pairs: CoSENT
        in_batch = {p.positive for p in ranked}
        negatives: list[str] = []
        for p in ranked:
            pool = [n for n in p.negatives if n not in in_batch]
            if pool and config.negatives_per_query:
                take = min(config.negatives_per_query, len(pool))
                negatives.extend(pool[j] for j in rng.choice(len(pool), size=take, replace=False))
        queries = tokenize_all(tm.tokenizer, [[instruction if p.instruction is None else p.instruction, p.query]
                                              for p in ranked + graded], config.max_length)
        docs = tokenize_all(tm.tokenizer, [p.positive for p in ranked] + negatives + [p.positive for p in graded],
                            config.max_length)
        n, m = len(ranked), len(negatives)
        scores = torch.tensor([p.score for p in graded], dtype=torch.float32)

        def loss_fn(vectors: list[torch.Tensor]) -> torch.Tensor:
            q, d = vectors
            loss = q.new_zeros(())
            if n:
                loss = loss + info_nce(q[:n], d[:n], d[n : n + m], scale=config.scale)
            if len(graded) > 1:
                loss = loss + cosent(q[n:], d[n + m :], scores, scale=config.cosent_scale)
            return loss

        if config.mini_batch_size:  # gradient caching: backpropagates here, chunk by chunk
            return cached_backward(embed, [queries, docs], loss_fn, config.mini_batch_size, tm.device,
                                   weight=1.0 / config.grad_accum)
        return plain_loss(embed, [queries, docs], loss_fn)

    steps = total_steps(config, order.per_epoch * config.batch_size, config.batch_size)
    summary = {**_data_id(config.data), "pairs": len(pairs), "with_hard_negatives": with_negs, "scored": scored,
               "sources": by_source, "instruction": instruction, "split": config.split if beir else None,
               "mined_negatives_per_query": config.mine_negatives, **(data_summary or {})}
    trainer = Trainer(config, tm, step_loss, steps, config.batch_size * config.grad_accum, summary,
                      make_evaluator(config, tm, config.pooling_mode, (instruction or None) if beir else None), log,
                      backward_in_step=bool(config.mini_batch_size))
    card = trainer.train()
    return (card, tm) if return_model else card


# --------------------------------------------------------------------------- weak (a folder's structure)
WEAK_PAIRS = "weak_pairs.jsonl"


def train_weak(config: WeakConfig, log: Log | None = None, return_model: bool = False) -> Any:
    """Domain adaptation without labels: pairs from the structure of the folder ``config.data``
    (heading path -> section, title -> body, inverse cloze; BM25 hard negatives), then contrastive
    LoRA training as ``train_supervised`` does. The pairs are kept in ``OUTPUT_DIR/weak_pairs.jsonl``
    and reused by ``--resume`` (so a resumed run trains on the same pairs even if the folder changed)."""
    from .trainer import ADAPTER_WEIGHTS, CHECKPOINTS
    from .weak import add_bm25_negatives, folder_pairs

    _setup(config)
    log = log or (lambda m: None)
    folder = Path(config.data).expanduser()
    if not folder.is_dir():
        raise TrainingDataError(f"{config.data} is not a folder")
    out = Path(config.output_dir).expanduser()
    saved = out / WEAK_PAIRS
    started = (out / ADAPTER_WEIGHTS).is_file() or any((out / CHECKPOINTS).glob("step-*"))
    if started and not config.resume:
        raise TrainingError(f"{out} already holds a training run; pass --resume to continue it "
                            f"or choose another --output-dir")
    if config.resume and saved.is_file():
        pairs = read_pairs_jsonl(saved)
        summary = {"pairs_file": str(saved), "pairs": len(pairs)}
        log(f"weak: {len(pairs)} pairs from {saved}")
    else:
        pairs, summary = folder_pairs(str(folder), max_words=config.max_words, min_words=config.min_words,
                                      ict_per_passage=config.ict_per_passage, seed=config.seed)
        if config.bm25_negatives:
            summary["bm25_negatives"] = add_bm25_negatives(pairs, config.bm25_negatives)
        out.mkdir(parents=True, exist_ok=True)
        tmp = saved.with_suffix(".tmp")
        with open(tmp, "w", encoding="utf-8") as fh:
            for p in pairs:
                fh.write(json.dumps({"query": p.query, "positive": p.positive, "negatives": p.negatives,
                                     "source": p.source}, ensure_ascii=False) + "\n")
        os.replace(tmp, saved)
        pairs = read_pairs_jsonl(saved)  # exactly what a resumed run reads
        log(f"weak: {summary}")
    kinds = {k: v for k, v in summary.items() if k in ("heading", "title", "ict")}
    return fit_pairs(config, pairs, _instruction_for(config), log, return_model,
                     data_summary={"weak": summary, **({"kinds": kinds} if kinds else {})})


__all__ = ["train_mntp", "train_simcse", "train_supervised", "train_weak", "fit_pairs", "mine_negatives", "encoder_view", "make_evaluator"]
