"""Entry point: ``llm2vec-rag``. Each command group lives in its own module."""
from __future__ import annotations

import click

from llm2vec_rag import __version__

from .errors import FriendlyGroup


@click.group(cls=FriendlyGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, "--version", "-V", prog_name="llm2vec-rag")
def cli() -> None:
    """Turn a decoder LLM into a text encoder (LLM2Vec) and search your documents with it."""


def _register() -> None:
    from .check import check
    from .embed import embed
    from .eval import eval_group
    from .index import index
    from .models import models
    from .search import search
    from .serve import serve
    from .train import train_group

    for command in (models, embed, index, check, search, serve, eval_group, train_group):
        cli.add_command(command)


_register()


def main() -> None:
    cli(prog_name="llm2vec-rag")


if __name__ == "__main__":  # pragma: no cover
    main()
