"""``llm2vec-rag eval sts``: Spearman correlation of cosine similarity with gold STS scores."""
from __future__ import annotations

import json

import click

from .common import json_option, load_encoder, model_options, quiet_option


@click.command(name="sts")
@click.argument("data", type=click.Path(exists=True))
@model_options
@click.option("--split", default="test", show_default=True, help="train, dev or test (STS 2012-16: test only).")
@click.option("--instruction", default="", help="Instruction for both sentences of every pair (default: none).")
@click.option("--batch-size", type=click.IntRange(min=1), default=32, show_default=True)
@click.option("--causal", is_flag=True, help="Keep the decoder's causal attention (the no-LLM2Vec baseline).")
@json_option
@quiet_option
def sts(data, model, adapters, pooling_mode, dtype, device, max_length, compile_model, split, instruction, batch_size, causal,
        as_json, quiet) -> None:
    """Spearman x 100 on STS-B, SICK-R or STS 2012-16 (DATA: the folder; the layout is detected)."""
    from llm2vec_rag.evaluation.sts import evaluate_sts, load_sts

    dataset = load_sts(data, split=split)
    if causal:
        from llm2vec_rag import LLM2Vec

        encoder = LLM2Vec.from_pretrained(model, adapters=list(adapters) or None, pooling_mode=pooling_mode,
                                          dtype=dtype, device=device, max_length=max_length,
                                          enable_bidirectional=False)
    else:
        encoder = load_encoder(model, adapters, pooling_mode, dtype, device, max_length, compile_model)
    result = evaluate_sts(encoder, dataset, instruction=instruction, batch_size=batch_size, show_progress=not quiet)
    result["bidirectional"] = bool(encoder.enable_bidirectional)
    if as_json:
        click.echo(json.dumps(result))
        return
    click.echo(f"{result['dataset']} ({result['split']}): {result['pairs']} pairs, model {result['model']}"
               f"{'' if encoder.enable_bidirectional else ' (causal)'}")
    for group, g in result["groups"].items():
        click.echo(f"  {group:<12} spearman {100 * g['spearman']:6.2f}   pearson {100 * g['pearson']:6.2f}"
                   f"   ({g['pairs']} pairs)")
        if len(g["subsets"]) > 1:
            for name, s in g["subsets"].items():
                click.echo(f"    {name:<22} {100 * s['spearman']:6.2f}   ({s['pairs']} pairs)")
    if len(result["groups"]) > 1:
        click.echo(f"  {'mean':<12} spearman {100 * result['spearman']:6.2f}")
