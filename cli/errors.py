"""The one place that turns user-facing errors into a one-line message and a non-zero exit."""
from __future__ import annotations

import sys
from typing import Any

import click

from llm2vec_rag.errors import LLM2VecError

EXIT_ERROR = 1


class FriendlyGroup(click.Group):
    """A click group whose commands report ``LLM2VecError`` (and I/O errors) without a traceback."""

    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except (LLM2VecError, OSError) as exc:
            message = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
            click.echo(f"error: {message}", err=True)
            sys.exit(EXIT_ERROR)
        except KeyboardInterrupt:
            click.echo("interrupted", err=True)
            sys.exit(130)
