"""``llm2vec-rag train``: LoRA adapters by masked next-token prediction, SimCSE or supervised contrastive training.

The options are generated from the recipe dataclasses in
``llm2vec_rag.training.config``, so defaults and help text live in one place.
"""
from __future__ import annotations

import dataclasses
import json
import typing

import click

from llm2vec_rag.training.config import MNTPConfig, SimCSEConfig, SupervisedConfig, TrainConfig, WeakConfig


def _option_for(f: dataclasses.Field, kind: type) -> click.Option | click.Argument:
    meta = f.metadata
    if f.name == "data":
        return click.argument("data", type=click.Path(exists=True))
    name = meta.get("flag", f.name.replace("_", "-"))
    default = f.default if f.default is not dataclasses.MISSING else f.default_factory()  # type: ignore[misc]
    common = dict(help=meta.get("help", ""), show_default=not meta.get("required"))
    if meta.get("multiple"):
        return click.option(f"--{name}", f.name, multiple=True, type=click.Path(exists=True, file_okay=False),
                            **{**common, "show_default": False})
    if kind is bool:
        return click.option(f"--{name}", f.name, is_flag=True, default=default, **{**common, "show_default": False})
    if meta.get("required"):
        return click.option(f"--{name}", f.name, required=True, type=click.Path(file_okay=False),
                            help=common["help"])
    if "choices" in meta:
        return click.option(f"--{name}", f.name, type=click.Choice(list(meta["choices"])), default=default, **common)
    py_type = kind if kind in (int, float, str) else type(default)
    return click.option(f"--{name}", f.name, type=py_type, default=default, **common)


def config_options(cls: type[TrainConfig]):
    """Decorate a click command with one option per dataclass field (the data file is an argument)."""
    hints = typing.get_type_hints(cls)

    def decorate(func):
        fields = dataclasses.fields(cls)
        for f in reversed(fields):
            func = _option_for(f, hints.get(f.name, str))(func)
        return func

    return decorate


def _build(cls: type[TrainConfig], params: dict) -> TrainConfig:
    names = {f.name for f in dataclasses.fields(cls)}
    values = {k: (list(v) if isinstance(v, tuple) else v) for k, v in params.items() if k in names}
    return cls(**values)


def _stop_on_sigterm() -> None:
    """``kill PID`` stops like Ctrl-C: the trainer checkpoints the steps done, then exits."""
    import signal

    def handler(signum, frame):
        raise KeyboardInterrupt

    try:
        signal.signal(signal.SIGTERM, handler)
    except ValueError:  # not the main thread (e.g. under some test runners)
        pass


def _run(cls, fn, params: dict, as_json: bool) -> None:
    config = _build(cls, params)
    _stop_on_sigterm()
    log = None if config.quiet else (lambda m: click.echo(m, err=True))
    card = fn(config, log=log)
    if as_json:
        click.echo(json.dumps({k: card[k] for k in ("recipe", "base_model", "steps", "train_seconds", "final_loss",
                                                     "evals", "load_with") if k in card}))
        return
    click.echo(f"wrote {config.recipe} adapter to {config.output_dir} ({card['steps']} steps, "
               f"final loss {card['final_loss']}, {card['train_seconds']} s of training)")
    for entry in card.get("evals", []):
        figures = ", ".join(f"{k}={v}" for k, v in entry.items() if k not in ("step", "eval_seconds"))
        click.echo(f"  eval at step {entry['step']}: {figures}")
    adapters = " ".join(f"--adapter {a}" for a in card["load_with"]["adapters"])
    click.echo(f"  use it: llm2vec-rag embed --model {card['base_model']} {adapters} ...")


json_flag = click.option("--json", "as_json", is_flag=True, help="Print the result card summary as JSON.")


@click.group(name="train")
def train_group() -> None:
    """Train LLM2Vec LoRA adapters: mntp, then simcse (unsupervised) or supervised.

    Every command writes an adapter directory (adapter_model.safetensors, a
    README.md card and training_card.json) that --adapter and
    LLM2Vec.from_pretrained(adapters=[...]) load directly; checkpoints go to
    OUTPUT_DIR/checkpoints and --resume continues a stopped run.
    """


@train_group.command()
@config_options(MNTPConfig)
@json_flag
def mntp(as_json: bool, **params) -> None:
    """Masked next-token prediction on DATA with bidirectional attention.

    DATA: a folder of .txt/.md files, a .txt/.txt.gz file with one paragraph
    or sentence a line (WikiText .raw.gz works), or JSON lines with a "text"
    field. A selected token at position i is predicted from the output at i-1.
    """
    from llm2vec_rag.training import train_mntp

    _run(MNTPConfig, train_mntp, params, as_json)


@train_group.command()
@config_options(SimCSEConfig)
@json_flag
def simcse(as_json: bool, **params) -> None:
    """Unsupervised SimCSE on DATA: each text twice under dropout, in-batch negatives.

    Start from the MNTP model with --adapter MNTP_DIR (merged first); a fresh
    LoRA is trained on top. DATA as for `train mntp`.
    """
    from llm2vec_rag.training import train_simcse

    _run(SimCSEConfig, train_simcse, params, as_json)


@train_group.command()
@config_options(SupervisedConfig)
@json_flag
def supervised(as_json: bool, **params) -> None:
    """Supervised contrastive training with in-batch and hard negatives.

    DATA: JSON lines with "query", "positive" and optionally "negative" or
    "negatives", or a BEIR folder (corpus.jsonl, queries.jsonl, qrels/SPLIT.tsv).
    A batch never holds the same positive twice.
    """
    from llm2vec_rag.training import train_supervised

    _run(SupervisedConfig, train_supervised, params, as_json)


@train_group.command()
@config_options(WeakConfig)
@json_flag
def weak(as_json: bool, **params) -> None:
    """Domain adaptation without labels, from the structure of the documents in DATA (a folder).

    DATA is read as `llm2vec-rag index` reads it; pairs are made from it
    (heading path -> section, title -> body, a sentence -> the rest of its
    passage), each with a BM25 hard negative, and a LoRA is trained on top of
    --model (default: the embedded default) with in-batch + hard negatives.
    The pairs are kept in OUTPUT_DIR/weak_pairs.jsonl for --resume.
    """
    from llm2vec_rag.training import train_weak

    _run(WeakConfig, train_weak, params, as_json)
