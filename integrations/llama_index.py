"""LlamaIndex adapters: ``LLM2VecEmbedding`` (and a vector store over the toolkit's FAISS index).

>>> from llama_index.core import Settings                                # doctest: +SKIP
>>> from llm2vec_rag.integrations.llama_index import LLM2VecEmbedding  # doctest: +SKIP
>>> Settings.embed_model = LLM2VecEmbedding()          # smollm2-135m, loaded once per process

Needs ``pip install "llm2vec-rag[llama-index]"``; the core package never imports LlamaIndex.
"""
from __future__ import annotations

import asyncio
import functools
from typing import TYPE_CHECKING, Any

from ._shared import DEFAULT_MODEL, encode_lock, require, resolve_encoder

require("llama_index.core", "llama-index", "llama-index-core")

from llama_index.core.base.embeddings.base import BaseEmbedding, Embedding  # noqa: E402
from llama_index.core.bridge.pydantic import Field, PrivateAttr, model_validator  # noqa: E402

if TYPE_CHECKING:  # pragma: no cover
    from llm2vec_rag.encoder import LLM2Vec

__all__ = ["LLM2VecEmbedding"]


class LLM2VecEmbedding(BaseEmbedding):
    """LlamaIndex embedding model over an LLM2Vec encoder.

    Queries get the encoder's query instruction (attended to, not pooled);
    node texts are embedded as they are, ``embed_batch_size`` at a time.
    ``model_name`` is loaded once per process for the same load arguments;
    pass ``encoder=`` to reuse an ``LLM2Vec`` you already have.
    """

    model_name: str = Field(default=DEFAULT_MODEL, description="embedded model name, .gguf file or model directory")
    embed_batch_size: int = Field(default=32, gt=0, le=2048, description="texts per forward pass")
    encoder: Any = Field(default=None, exclude=True, description="an already loaded LLM2Vec to use instead")
    adapters: list[str] | None = Field(default=None, description="PEFT adapter directories, applied in order")
    query_instruction: str | None = Field(default=None, description="overrides the model's query instruction")
    normalize: bool = Field(default=False, description="L2-normalise vectors")
    device: str = "auto"
    dtype: str = "auto"
    pooling_mode: str | None = None
    max_length: int | None = None

    _encoder: Any = PrivateAttr()

    @model_validator(mode="before")
    @classmethod
    def _accept_model_alias(cls, values: Any) -> Any:
        """``model=`` (a name or an ``LLM2Vec``) is accepted like in the LangChain adapter."""
        if isinstance(values, dict) and "model" in values:
            values = dict(values)
            model = values.pop("model")
            key = "model_name" if isinstance(model, str) else "encoder"
            values[key] = model
        return values

    def model_post_init(self, __context: Any) -> None:
        self._encoder = resolve_encoder(
            self.encoder, self.model_name, adapters=self.adapters, device=self.device, dtype=self.dtype,
            pooling_mode=self.pooling_mode, max_length=self.max_length,
        )
        if self.encoder is not None:
            self.model_name = self.encoder.name

    @classmethod
    def class_name(cls) -> str:
        return "LLM2VecEmbedding"

    @property
    def client(self) -> LLM2Vec:
        """The underlying encoder (shared with other adapters loaded with the same arguments)."""
        return self._encoder

    @property
    def dim(self) -> int:
        return self._encoder.dim

    def _options(self) -> dict[str, Any]:
        return {"batch_size": self.embed_batch_size, "normalize_embeddings": self.normalize,
                "show_progress_bar": False}

    # ------------------------------------------------------------------ sync
    def _get_query_embedding(self, query: str) -> Embedding:
        with encode_lock(self._encoder):
            vectors = self._encoder.encode_queries([query], instruction=self.query_instruction, **self._options())
        return vectors[0].tolist()

    def _get_text_embedding(self, text: str) -> Embedding:
        return self._get_text_embeddings([text])[0]

    def _get_text_embeddings(self, texts: list[str]) -> list[Embedding]:
        if not texts:
            return []
        with encode_lock(self._encoder):
            vectors = self._encoder.encode_documents(list(texts), **self._options())
        return vectors.tolist()

    # ----------------------------------------------------------------- async
    async def _aget_query_embedding(self, query: str) -> Embedding:
        """In a worker thread, so the event loop keeps running during the forward pass."""
        return await asyncio.get_running_loop().run_in_executor(
            None, functools.partial(self._get_query_embedding, query)
        )

    async def _aget_text_embedding(self, text: str) -> Embedding:
        return (await self._aget_text_embeddings([text]))[0]

    async def _aget_text_embeddings(self, texts: list[str]) -> list[Embedding]:
        """One batched call in a worker thread (not one task per text)."""
        return await asyncio.get_running_loop().run_in_executor(
            None, functools.partial(self._get_text_embeddings, list(texts))
        )
