"""Options shared by several commands, defined once."""
from __future__ import annotations

import click

from llm2vec_rag.embedded import DEFAULT_MODEL


def model_options(f):
    """--model/--adapter/--pooling/--dtype/--device/--max-length/--compile."""
    options = [
        click.option("--model", "-m", default=DEFAULT_MODEL, show_default=True,
                     help="Embedded model name, .gguf file, model directory or Hub id."),
        click.option("--adapter", "adapters", multiple=True, type=click.Path(exists=True, file_okay=False),
                     help="LoRA adapter directory; repeat to stack in order."),
        click.option("--pooling", "pooling_mode", default=None,
                     type=click.Choice(["mean", "weighted_mean", "eos_token", "last_token", "bos_token"]),
                     help="Pooling mode (default: the model's own, else mean)."),
        click.option("--dtype", default="auto", show_default=True,
                     type=click.Choice(["auto", "float32", "bfloat16", "float16"])),
        click.option("--device", default="auto", show_default=True, help="auto, cpu, cuda, cuda:1, ..."),
        click.option("--max-length", type=click.IntRange(min=1), default=None,
                     help="Truncate texts to this many tokens (default: the model's own, else 512)."),
        click.option("--compile", "compile_model", is_flag=True,
                     help="torch.compile the model (a one-off compile of about a minute). On CPU the native "
                          "engine's own kernels are faster without it; it can help the transformers engine "
                          "(see docs/performance.md)."),
    ]
    for option in reversed(options):
        f = option(f)
    return f


def load_encoder(model: str, adapters=(), pooling_mode=None, dtype="auto", device="auto", max_length=None,
                 compile_model=False):
    from llm2vec_rag.index.model import load_encoder as load

    return load(model, list(adapters), pooling_mode=pooling_mode, max_length=max_length, dtype=dtype, device=device,
                compile=compile_model)


quiet_option = click.option("--quiet", "-q", is_flag=True, help="No progress bars or notes on stderr.")
json_option = click.option("--json", "as_json", is_flag=True, help="Machine-readable output (JSON lines).")


def search_mode_options(f=None, *, default_mode: str | None = None):
    """--mode, --alpha, --fusion: how a search ranks (see llm2vec_rag.index.hybrid)."""
    from llm2vec_rag.index.hybrid import DEFAULT_ALPHA, DEFAULT_FUSION, DEFAULT_MODE, DEFAULT_RRF_ALPHA, FUSIONS, MODES

    if f is None:
        return lambda g: search_mode_options(g, default_mode=default_mode)

    f = click.option("--fusion", type=click.Choice(FUSIONS), default=DEFAULT_FUSION, show_default=True,
                     help="hybrid: convex (normalised scores, weighted by --alpha) or rrf (reciprocal rank fusion).")(f)
    f = click.option("--alpha", type=click.FloatRange(0.0, 1.0), default=None,
                     help=f"hybrid: weight of the dense side (1 = dense only, 0 = lexical only; default "
                          f"{DEFAULT_ALPHA} with convex fusion, {DEFAULT_RRF_ALPHA} with rrf).")(f)
    f = click.option("--mode", type=click.Choice(MODES), default=default_mode or DEFAULT_MODE, show_default=True,
                     help="hybrid (dense + BM25, fused), dense (embeddings only) or lexical (BM25 only, no model).")(f)
    return f
