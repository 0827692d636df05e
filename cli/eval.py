"""``llm2vec-rag eval``: benchmark an encoder (``eval retrieval`` on a BEIR folder)."""
from __future__ import annotations

import json

import click

from .common import json_option, load_encoder, model_options, quiet_option, search_mode_options


@click.group(name="eval")
def eval_group() -> None:
    """Measure an encoder on standard benchmarks."""


@eval_group.command()
@click.argument("data_dir", type=click.Path(file_okay=False))
@model_options
@click.option("--split", default="test", show_default=True, help="qrels/<split>.tsv to score.")
@click.option("--instruction", default=None,
              help="Query instruction (default: the dataset's, e.g. SciFact's claim instruction; '' for none).")
@click.option("--batch-size", type=click.IntRange(min=1), default=32, show_default=True)
@click.option("--max-docs", type=click.IntRange(min=1), default=None,
              help="Quick run on this many documents (relevant ones first); easier than the full task.")
@click.option("--no-cache", is_flag=True, help="Re-encode the documents even if cached.")
@search_mode_options(default_mode="dense")
@json_option
@quiet_option
def retrieval(data_dir, model, adapters, pooling_mode, dtype, device, max_length, compile_model, split, instruction, batch_size,
              max_docs, no_cache, mode, alpha, fusion, as_json, quiet) -> None:
    """nDCG@10, MRR@10, recall@10/100 on a BEIR-layout DATA_DIR (corpus.jsonl, queries.jsonl, qrels/).

    --mode ranks the way `search` does: dense (default here: the encoder alone), hybrid (dense + BM25,
    `search`'s default) or lexical (BM25; loads no model).
    """
    from llm2vec_rag.evaluation.retrieval import load_beir, run_retrieval_eval
    from llm2vec_rag.index.hybrid import SearchSettings

    settings = SearchSettings.of(mode, alpha, fusion)
    data = load_beir(data_dir, split=split, max_docs=max_docs)
    encoder = None
    if settings.mode != "lexical":
        encoder = load_encoder(model, adapters, pooling_mode, dtype, device, max_length, compile_model)
    log = None if quiet else (lambda m: click.echo(m, err=True))
    result = run_retrieval_eval(encoder, data, instruction=instruction, batch_size=batch_size,
                                show_progress=not quiet, use_cache=not no_cache, log=log, search=settings)
    if as_json:
        click.echo(json.dumps(result))
        return
    using = f"model {result['model']}" if "model" in result else "BM25"
    if settings.mode == "hybrid":
        using += f" + BM25, {settings.fusion} fusion, alpha {settings.alpha}"
    click.echo(f"{result['dataset']} ({result['split']}), {settings.mode}: {result['queries']} queries, "
               f"{result['documents']} documents, {using}")
    for name in ("ndcg@10", "mrr@10", "recall@10", "recall@100"):
        click.echo(f"  {name:<11}{result[name]:.4f}")


from .eval_sts import sts as _sts  # noqa: E402  (defined in its own module; registered here)

eval_group.add_command(_sts)
