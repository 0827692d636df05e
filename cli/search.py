"""``llm2vec-rag search "query"``: the best chunks of an index, for people or (``--json``) programs."""
from __future__ import annotations

import json
import os

import click

from .common import json_option, quiet_option, search_mode_options
from .index import index_dir_option


def _display_path(source: str) -> str:
    if os.path.isabs(source):
        rel = os.path.relpath(source)
        return rel if not rel.startswith("..") else source
    return source


@click.command()
@click.argument("query")
@index_dir_option
@click.option("--k", "-k", "k", type=int, default=10, show_default=True, help="Number of results.")
@click.option("--where", default=None, help="Only files matching this path glob or folder, e.g. '*.md', 'guide/'.")
@click.option("--instruction", default=None, help="Query instruction (default: the one recorded in the index).")
@search_mode_options
@click.option("--dtype", default="auto", show_default=True, type=click.Choice(["auto", "float32", "bfloat16", "float16"]))
@click.option("--device", default="auto", show_default=True, help="auto, cpu, cuda, ...")
@json_option
@quiet_option
def search(query, index_dir, k, where, instruction, mode, alpha, fusion, dtype, device, as_json, quiet) -> None:
    """Search the index for QUERY with the model the index was built with."""
    from llm2vec_rag.errors import LLM2VecError
    from llm2vec_rag.index import Index

    if not query.strip():
        raise LLM2VecError("empty query: give some text to search for")
    if k < 1:
        raise LLM2VecError(f"--k must be at least 1, got {k}")
    log = (lambda m: None) if quiet else (lambda m: click.echo(m, err=True))
    idx = Index.load(index_dir, log=log, dtype=dtype, device=device)
    try:
        hits = idx.search(query, k=k, where=where, instruction=instruction, mode=mode, alpha=alpha, fusion=fusion)
    finally:
        idx.close()
    if as_json:
        for h in hits:
            click.echo(json.dumps(h.json_fields()))
        return
    if not hits:
        click.echo("no results" + (f" matching --where {where!r}" if where else ""), err=True)
        return
    for h in hits:
        where_in = _display_path(h.source) + (f" (page {h.page})" if h.page else "")
        click.echo(f"{h.rank:>2}. {h.score:.3f}  {where_in}" + (f"  § {h.heading}" if h.heading else ""))
        snippet = " ".join(h.text.split())
        click.echo(f"    {snippet[:240]}{'…' if len(snippet) > 240 else ''}")
