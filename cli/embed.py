"""``llm2vec-rag embed``: texts (one per line) to JSON lines or a .npy matrix."""
from __future__ import annotations

import json
import sys
from pathlib import Path

import click

from llm2vec_rag.errors import LLM2VecError

from .common import load_encoder, model_options, quiet_option


@click.command()
@click.argument("input_file", type=click.File("r", encoding="utf-8", errors="replace"), default="-")
@model_options
@click.option("--output", "-o", type=click.Path(dir_okay=False, writable=True),
              help="Write here: .npy for a float32 matrix, anything else for JSON lines (default: stdout).")
@click.option("--query", "as_query", is_flag=True, help="Embed as queries, with the query instruction.")
@click.option("--instruction", default=None, help="Instruction for every text (implies --query).")
@click.option("--normalize/--no-normalize", default=False, help="L2-normalise the vectors.")
@click.option("--batch-size", type=click.IntRange(min=1), default=32, show_default=True)
@quiet_option
def embed(input_file, model, adapters, pooling_mode, dtype, device, max_length, compile_model, output, as_query, instruction,
          normalize, batch_size, quiet) -> None:
    """Embed texts from INPUT_FILE (default: stdin), one per line."""
    if output:
        check_output_path(output)  # before the model loads and everything is encoded
    texts = [line.rstrip("\n") for line in input_file]
    if not texts:
        raise LLM2VecError("no input texts (the input is empty)")
    encoder = load_encoder(model, adapters, pooling_mode, dtype, device, max_length, compile_model)
    options = dict(batch_size=batch_size, normalize_embeddings=normalize, show_progress_bar=False if quiet else None)
    if as_query or instruction is not None:
        vectors = encoder.encode_queries(texts, instruction=instruction, **options)
    else:
        vectors = encoder.encode_documents(texts, **options)
    if output and output.endswith(".npy"):
        import numpy as np

        tmp = Path(output).with_name(Path(output).name + ".tmp.npy")
        try:
            np.save(tmp, vectors.astype("float32"))
            tmp.replace(output)
        except OSError as exc:
            tmp.unlink(missing_ok=True)
            raise LLM2VecError(f"cannot write {output}: {exc.strerror or exc}") from None
        if not quiet:
            click.echo(f"wrote {vectors.shape[0]} x {vectors.shape[1]} vectors to {output}", err=True)
        return
    sink = open(output, "w", encoding="utf-8") if output else sys.stdout
    try:
        for text, vector in zip(texts, vectors):
            sink.write(json.dumps({"text": text, "embedding": [round(float(x), 7) for x in vector]}) + "\n")
    finally:
        if output:
            sink.close()


def check_output_path(output: str) -> None:
    """An output file that can be written: its folder exists and is writable, it is not a folder."""
    import os

    path = Path(output).expanduser()
    parent = path.parent
    if path.is_dir():
        raise LLM2VecError(f"--output {output} is a folder; give a file name")
    if not parent.is_dir():
        raise LLM2VecError(f"cannot write {output}: the folder {parent} does not exist")
    if not os.access(parent, os.W_OK):
        raise LLM2VecError(f"cannot write {output}: the folder {parent} is not writable")
