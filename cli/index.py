"""``llm2vec-rag index FOLDER``: embed a folder of documents into a searchable index, incrementally."""
from __future__ import annotations

import json

import click
from click.core import ParameterSource

from .common import json_option, model_options, quiet_option

index_dir_option = click.option(
    "--index", "index_dir", default=".llm2vec-rag", show_default=True, type=click.Path(),
    help="Index directory.")


@click.command()
@click.argument("folder", type=click.Path())
@index_dir_option
@model_options
@click.option("--index-type", default=None,
              help="flat (exact, default), hnsw, ivf-pq, sq8 or a FAISS factory string; changing it rebuilds FAISS "
                   "from the stored vectors.")
@click.option("--backend", type=click.Choice(["faiss", "qdrant"], case_sensitive=False), default=None,
              help="Vector engine: faiss (a file in --index, default) or qdrant (a local collection in --index, or "
                   "the server at --url). Switching an existing index copies its stored vectors, no re-embedding.")
@click.option("--url", default=None, help="Qdrant server, e.g. http://localhost:6333 (API key: $QDRANT_API_KEY), "
              "or file:///folder for a local-mode folder shared by several indexes.")
@click.option("--collection", default=None, help="Qdrant collection name (default: derived from the --index path).")
@click.option("--chunk-tokens", type=int, default=None,
              help="Chunk size in model tokens (default: the index's last setting, else 256).")
@click.option("--overlap", type=int, default=None,
              help="Tokens of whole sentences repeated between chunks (default: the index's, else 32).")
@click.option("--include", multiple=True, help="Only files matching this glob (repeatable).")
@click.option("--exclude", multiple=True, help="Skip files or folders matching this glob (repeatable).")
@click.option("--ext", "extensions", multiple=True,
              help="File extensions to read (repeatable or comma-separated; default: text, docs, PDF, source).")
@click.option("--max-file-mb", type=float, default=20.0, show_default=True, help="Skip larger files.")
@click.option("--batch-size", type=click.IntRange(min=1), default=32, show_default=True)
@click.option("--instruction", default=None, help="Query instruction to record for search (default: the model's).")
@click.option("--hidden", is_flag=True, help="Also index hidden files and folders.")
@click.option("--no-gitignore", is_flag=True, help="Ignore .gitignore rules.")
@click.option("--follow-symlinks", is_flag=True,
              help="Also follow symbolic links that lead out of FOLDER (links inside it are always followed).")
@click.option("--rebuild", is_flag=True, help="Start the index over (needed to switch models).")
@click.option("--ray", "ray", is_flag=False, flag_value="local", default=None, metavar="[ADDRESS]",
              help="Embed with Ray Data actors, one model each (one per GPU, else CPU actors); files are still read "
                   "and chunked here. --ray alone starts a local Ray runtime (put it after FOLDER); --ray auto or "
                   "--ray ray://HOST:10001 joins a cluster. Commits every 4096 chunks. Needs llm2vec-rag[ray].")
@click.option("--ray-actors", type=click.IntRange(min=1), default=None,
              help="Number of Ray actors (default: one per GPU, else CPUs // 4).")
@click.option("--commit-chunks", type=click.IntRange(min=1), default=None,
              help="Chunks embedded per commit (default 256; with --ray 4096, one actor start-up each: raise it "
                   "for big models on big clusters).")
@json_option
@quiet_option
def index(folder, index_dir, model, adapters, pooling_mode, dtype, device, max_length, compile_model, index_type,
          backend, url, collection, chunk_tokens, overlap, include, exclude, extensions, max_file_mb, batch_size, instruction, hidden, no_gitignore,
          follow_symlinks, rebuild, ray, ray_actors, commit_chunks, as_json, quiet) -> None:
    """Index FOLDER (or one file) into --index; re-runs embed only new or changed files."""
    from llm2vec_rag.errors import LLM2VecError
    from llm2vec_rag.index import Index

    if max_file_mb <= 0:
        raise LLM2VecError(f"--max-file-mb must be positive, got {max_file_mb}")
    if ray is not None:
        from llm2vec_rag.index.ray_embed import require_ray

        require_ray()  # before a model loads
    elif ray_actors is not None:
        raise LLM2VecError("--ray-actors needs --ray")
    from llm2vec_rag.index.sync import check_update

    ctx = click.get_current_context()
    explicit = ctx.get_parameter_source("model") != ParameterSource.DEFAULT or adapters
    log = (lambda m: None) if quiet else (lambda m: click.echo(m, err=True))
    # the folder and the options, before an index is created or a model loaded
    walked = check_update(folder, index_dir, include=include, exclude=exclude, extensions=list(extensions) or None,
                          max_file_mb=max_file_mb, chunk_tokens=chunk_tokens, overlap=overlap, hidden=hidden,
                          gitignore=not no_gitignore, ray_actors=ray_actors, follow_symlinks=follow_symlinks,
                          rebuild=rebuild)
    idx = Index.open(index_dir, model=model if explicit else None, adapters=adapters, index_type=index_type,
                     query_instruction=instruction, rebuild=rebuild, log=log, backend=backend, url=url,
                     collection=collection, pooling_mode=pooling_mode,
                     dtype=dtype, device=device, max_length=max_length, compile=compile_model)
    try:
        report = idx.update(folder, include=include, exclude=exclude, extensions=list(extensions) or None,
                            max_file_mb=max_file_mb, chunk_tokens=chunk_tokens, overlap=overlap,
                            batch_size=batch_size, progress=not quiet, hidden=hidden, gitignore=not no_gitignore,
                            ray=ray, ray_actors=ray_actors, commit_chunks=commit_chunks, walked=walked,
                            follow_symlinks=follow_symlinks)
        stats = idx.stats()
    except BaseException:
        idx.abort()  # committed batches stay for a re-run; an unfinished --rebuild is not swapped in
        raise
    idx.close()
    if as_json:
        click.echo(json.dumps({**report.to_dict(), "index": stats, **({"ray": ray} if ray else {})}))
    else:
        click.echo(f"{index_dir}: {report.summary()}")
