"""The one place that turns user-facing errors into a one-line message and a non-zero exit."""
from __future__ import annotations

import errno
import sqlite3
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
        except (LLM2VecError, OSError, sqlite3.DatabaseError) as exc:
            if isinstance(exc, sqlite3.DatabaseError):  # one not caught where the index path is known
                from llm2vec_rag.index.meta import database_error

                exc = database_error(exc)
            elif isinstance(exc, OSError) and exc.errno == errno.ENOSPC:
                where = f" while writing {exc.filename}" if exc.filename else ""
                exc = LLM2VecError(f"no space left on the device{where}; the unfinished change was not kept")
            message = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
            click.echo(f"error: {message}", err=True)
            sys.exit(EXIT_ERROR)
        except KeyboardInterrupt:
            click.echo("interrupted", err=True)
            sys.exit(130)
