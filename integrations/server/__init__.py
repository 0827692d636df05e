"""``llm2vec-rag serve``: an embeddings and search server that OpenAI, TEI and Ollama clients use unchanged.

Needs the ``server`` extra (``pip install "llm2vec-rag[server]"``: FastAPI, uvicorn).
The core package never imports it. See ``docs/serving.md``.

>>> from llm2vec_rag.integrations.server import Served, ServerSettings, create_app   # doctest: +SKIP
>>> app = create_app(lambda: Served(models={"tiny": encoder}), ServerSettings())     # doctest: +SKIP
"""
from __future__ import annotations

from .engine import BatchStats, EmbedResult, Engine, InputTooLongError, NotReadyError, QueueFullError, Served
from .settings import ServerSettings


def create_app(*args, **kwargs):
    """See :func:`llm2vec_rag.integrations.server.app.create_app` (imports FastAPI on call)."""
    from .app import create_app as build

    return build(*args, **kwargs)


__all__ = ["BatchStats", "EmbedResult", "Engine", "InputTooLongError", "NotReadyError", "QueueFullError", "Served",
           "ServerSettings", "create_app"]
