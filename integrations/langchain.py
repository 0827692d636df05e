"""LangChain adapters: ``LLM2VecEmbeddings`` and a FAISS-backed ``LLM2VecVectorStore``.

>>> from llm2vec_rag.integrations.langchain import LLM2VecEmbeddings   # doctest: +SKIP
>>> emb = LLM2VecEmbeddings()                         # smollm2-135m, loaded once per process
>>> emb.embed_query("what is a cell?")[:3]            # doctest: +SKIP

Needs ``pip install "llm2vec-rag[langchain]"``; the core package never imports LangChain.
"""
from __future__ import annotations

import asyncio
import functools
from typing import TYPE_CHECKING, Any

from ._shared import DEFAULT_MODEL, encode_lock, get_encoder, require

require("langchain_core", "langchain", "langchain-core")

from langchain_core.embeddings import Embeddings  # noqa: E402
from pydantic import BaseModel, ConfigDict, Field, PrivateAttr, model_validator  # noqa: E402

if TYPE_CHECKING:  # pragma: no cover
    from llm2vec_rag.encoder import LLM2Vec

__all__ = ["LLM2VecEmbeddings"]


class LLM2VecEmbeddings(BaseModel, Embeddings):
    """LangChain ``Embeddings`` over an LLM2Vec encoder.

    Queries get the encoder's query instruction (attended to, not pooled);
    documents are embedded as they are. Pass ``model=`` (a name, ``.gguf``
    file or directory) to load one, cached process-wide by the load
    arguments, or ``encoder=`` (or ``model=``) an existing ``LLM2Vec``.
    """

    model_config = ConfigDict(arbitrary_types_allowed=True, extra="forbid", protected_namespaces=())

    model: str = Field(default=DEFAULT_MODEL, description="embedded model name, .gguf file or model directory")
    encoder: Any = Field(default=None, exclude=True, description="an already loaded LLM2Vec to use instead")
    adapters: list[str] | None = Field(default=None, description="PEFT adapter directories, applied in order")
    query_instruction: str | None = Field(default=None, description="overrides the model's query instruction")
    batch_size: int = Field(default=32, ge=1)
    normalize: bool = Field(default=False, description="L2-normalise vectors (cosine via inner product)")
    device: str = "auto"
    dtype: str = "auto"
    pooling_mode: str | None = None
    max_length: int | None = None
    show_progress: bool = False

    _encoder: LLM2Vec = PrivateAttr()

    @model_validator(mode="before")
    @classmethod
    def _encoder_passed_as_model(cls, values: Any) -> Any:
        """``LLM2VecEmbeddings(model=encoder)`` means ``encoder=encoder``."""
        if isinstance(values, dict) and values.get("model") is not None and not isinstance(values["model"], str):
            from llm2vec_rag.encoder import LLM2Vec

            if isinstance(values["model"], LLM2Vec):
                values = dict(values)
                values["encoder"] = values.pop("model")
        return values

    def model_post_init(self, __context: Any) -> None:
        if self.encoder is not None:
            from llm2vec_rag.encoder import LLM2Vec

            if not isinstance(self.encoder, LLM2Vec):
                raise TypeError(f"encoder must be an LLM2Vec, got {type(self.encoder).__name__}")
            self._encoder = self.encoder
            self.model = self.encoder.name
        else:
            self._encoder = get_encoder(
                self.model,
                adapters=self.adapters,
                device=self.device,
                dtype=self.dtype,
                pooling_mode=self.pooling_mode,
                max_length=self.max_length,
            )

    @property
    def client(self) -> LLM2Vec:
        """The underlying encoder (shared with other adapters loaded with the same arguments)."""
        return self._encoder

    @property
    def dim(self) -> int:
        return self._encoder.dim

    def _options(self) -> dict[str, Any]:
        return {
            "batch_size": self.batch_size,
            "normalize_embeddings": self.normalize,
            "show_progress_bar": self.show_progress,
        }

    def embed_documents(self, texts: list[str]) -> list[list[float]]:
        """Embed documents (no instruction)."""
        if not texts:
            return []
        with encode_lock(self._encoder):
            vectors = self._encoder.encode_documents(list(texts), **self._options())
        return vectors.tolist()

    def embed_query(self, text: str) -> list[float]:
        """Embed one query with the query instruction."""
        with encode_lock(self._encoder):
            vectors = self._encoder.encode_queries([text], instruction=self.query_instruction, **self._options())
        return vectors[0].tolist()

    async def aembed_documents(self, texts: list[str]) -> list[list[float]]:
        """Like :meth:`embed_documents`, in a worker thread so the event loop keeps running."""
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(None, functools.partial(self.embed_documents, list(texts)))

    async def aembed_query(self, text: str) -> list[float]:
        """Like :meth:`embed_query`, in a worker thread so the event loop keeps running."""
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(None, functools.partial(self.embed_query, text))
