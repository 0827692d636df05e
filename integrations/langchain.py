"""LangChain adapters: ``LLM2VecEmbeddings`` and a FAISS-backed ``LLM2VecVectorStore``.

>>> from llm2vec_rag.integrations.langchain import LLM2VecEmbeddings   # doctest: +SKIP
>>> emb = LLM2VecEmbeddings()                         # smollm2-135m, loaded once per process
>>> emb.embed_query("what is a cell?")[:3]            # doctest: +SKIP

Needs ``pip install "llm2vec-rag[langchain]"``; the core package never imports LangChain.
"""
from __future__ import annotations

import asyncio
import functools
import hashlib
import os
import shutil
import tempfile
import uuid
import weakref
from collections.abc import Callable, Iterable, Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

import numpy as np

from ._shared import DEFAULT_MODEL, encode_lock, require, resolve_encoder

require("langchain_core", "langchain", "langchain-core")

from langchain_core.documents import Document  # noqa: E402
from langchain_core.embeddings import Embeddings  # noqa: E402
from langchain_core.vectorstores import VectorStore  # noqa: E402
from langchain_core.vectorstores.utils import maximal_marginal_relevance  # noqa: E402
from pydantic import BaseModel, ConfigDict, Field, PrivateAttr, model_validator  # noqa: E402

from llm2vec_rag.index.hybrid import DEFAULT_MODE, SearchSettings  # noqa: E402

if TYPE_CHECKING:  # pragma: no cover
    from llm2vec_rag.encoder import LLM2Vec
    from llm2vec_rag.index import Hit, Index, Record

__all__ = ["LLM2VecEmbeddings", "LLM2VecVectorStore"]

T = TypeVar("T")


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
        self._encoder = resolve_encoder(
            self.encoder, self.model, adapters=self.adapters, device=self.device, dtype=self.dtype,
            pooling_mode=self.pooling_mode, max_length=self.max_length,
        )
        if self.encoder is not None:
            self.model = self.encoder.name

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


# ============================================================================ vector store


class _LockedEncoder:
    """An ``LLM2Vec`` as the index sees it, with every encode call under the encoder's lock."""

    def __init__(self, encoder: LLM2Vec) -> None:
        self._inner = encoder

    def __getattr__(self, name: str) -> Any:  # name, dim, fingerprint, pooling_mode, ...
        return getattr(self._inner, name)

    def encode_documents(self, texts: Sequence[str], **options: Any) -> np.ndarray:
        with encode_lock(self._inner):
            return self._inner.encode_documents(list(texts), **options)

    def encode_queries(self, queries: Sequence[str], instruction: str | None = None, **options: Any) -> np.ndarray:
        with encode_lock(self._inner):
            return self._inner.encode_queries(list(queries), instruction=instruction, **options)


class _EmbeddingsEncoder:
    """Any LangChain ``Embeddings`` shaped like the encoder the index expects.

    The fingerprint hashes the class, its settings and the vector of a probe
    text, so reopening an index with different embeddings is refused.
    """

    def __init__(self, embedding: Embeddings) -> None:
        self.embedding = embedding
        self.name = f"langchain:{type(embedding).__name__}"
        self.query_instruction = ""
        self.document_instruction = ""
        self._probe: list[float] | None = None

    def _probe_vector(self) -> list[float]:
        if self._probe is None:
            self._probe = [float(x) for x in self.embedding.embed_query("llm2vec-rag fingerprint probe")]
        return self._probe

    @property
    def dim(self) -> int:
        return len(self._probe_vector())

    def fingerprint(self) -> str:
        h = hashlib.sha256(self.name.encode())
        settings = self.embedding.model_dump_json() if isinstance(self.embedding, BaseModel) else ""
        h.update(settings.encode())
        h.update(np.asarray(self._probe_vector(), dtype="<f4").round(5).tobytes())
        return h.hexdigest()[:16]

    def encode_documents(self, texts: Sequence[str], **_: Any) -> np.ndarray:
        return np.asarray(self.embedding.embed_documents(list(texts)), dtype=np.float32).reshape(len(texts), -1)

    def encode_queries(self, queries: Sequence[str], instruction: str | None = None, **_: Any) -> np.ndarray:
        return np.asarray([self.embedding.embed_query(q) for q in queries], dtype=np.float32)


def _index_encoder(embedding: Embeddings) -> tuple[Any, str | None]:
    """What the index embeds with, and the model spec it records (so ``Index.load`` can reload it)."""
    if isinstance(embedding, LLM2VecEmbeddings):
        return _LockedEncoder(embedding.client), (embedding.model if embedding.encoder is None else None)
    return _EmbeddingsEncoder(embedding), None


class _Worker:
    """One thread that owns the index: SQLite connections may only be used by the thread that made them.

    Sync and async callers alike hand index work to it, which also serialises writes.
    """

    def __init__(self) -> None:
        self.executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="llm2vec-vectorstore")
        self.index: Index | None = None

    def run(self, fn: Callable[..., T], *args: Any, **kwargs: Any) -> T:
        return self.executor.submit(fn, *args, **kwargs).result()

    async def arun(self, fn: Callable[..., T], *args: Any, **kwargs: Any) -> T:
        return await asyncio.wrap_future(self.executor.submit(fn, *args, **kwargs))

    def close(self, temp_dir: str | None = None) -> None:
        """Save and close the index, stop the thread, remove a temporary directory."""
        index, self.index = self.index, None
        try:
            if index is not None:
                self.executor.submit(index.close).result()
        finally:
            self.executor.shutdown(wait=True)
            if temp_dir:
                shutil.rmtree(temp_dir, ignore_errors=True)


class LLM2VecVectorStore(VectorStore):
    """A LangChain vector store over the toolkit's index (SQLite + FAISS, or + Qdrant with ``backend="qdrant"``).

    ``path`` is where the index lives; without one the store is temporary
    (a directory removed on :meth:`close` or at exit). Vectors are compared
    by cosine similarity; ``filter`` takes what ``Index.search`` takes as
    ``where`` (a dict of metadata equalities, a path glob or a callable).
    Nothing is pickled: reopen a saved store with :meth:`load`.
    """

    def __init__(self, embedding: Embeddings, path: str | os.PathLike[str] | None = None, *,
                 index_type: str = "flat", overwrite: bool = False, backend: str | None = None,
                 url: str | None = None, collection: str | None = None, mode: str = DEFAULT_MODE) -> None:
        from llm2vec_rag.index import Index
        from llm2vec_rag.index.meta import META_FILE

        self.mode = SearchSettings.of(mode).mode  # text searches: hybrid (default), dense or lexical
        self._embedding = embedding
        self._temp_dir = None if path is not None else tempfile.mkdtemp(prefix="llm2vec-vectorstore-")
        self.path = Path(path if path is not None else self._temp_dir).expanduser()
        encoder, model = _index_encoder(embedding)
        self._worker = _Worker()
        self._finalizer = weakref.finalize(self, self._worker.close, self._temp_dir)
        quiet = lambda message: None  # noqa: E731  (notes about FAISS rebuilds are for the CLI)
        try:
            if (self.path / META_FILE).exists() and not overwrite:
                self._index = self._worker.run(Index.open, self.path, encoder, log=quiet)
            else:
                query_instruction = None
                if isinstance(embedding, LLM2VecEmbeddings):
                    query_instruction = embedding.query_instruction
                self._index = self._worker.run(
                    Index.create, self.path, encoder, model=model, index_type=index_type,
                    query_instruction=query_instruction, overwrite=overwrite, log=quiet,
                    backend=backend, url=url, collection=collection,
                )
        except BaseException:
            self._finalizer()
            raise
        self._worker.index = self._index

    # ------------------------------------------------------------------ lifecycle
    @classmethod
    def load(cls, path: str | os.PathLike[str], embedding: Embeddings) -> LLM2VecVectorStore:
        """Reopen a store saved at ``path``; refuses embeddings other than the ones it was built with."""
        from llm2vec_rag.errors import IndexNotFoundError
        from llm2vec_rag.index.meta import META_FILE

        if not (Path(path).expanduser() / META_FILE).is_file():
            raise IndexNotFoundError(f"no vector store at {path}")
        return cls(embedding, path)

    def save(self) -> None:
        """Write the FAISS snapshot now (SQLite already holds every change)."""
        self._worker.run(self._index.save)

    def close(self) -> None:
        """Save, release the index's write lock, and delete the directory if it was temporary."""
        self._finalizer()

    def __enter__(self) -> LLM2VecVectorStore:
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()

    @property
    def embeddings(self) -> Embeddings:
        return self._embedding

    @property
    def index(self) -> Index:
        """The underlying index (use it from one thread at a time)."""
        return self._index

    def __len__(self) -> int:
        return self._worker.run(len, self._index)

    # ------------------------------------------------------------------ writing
    @classmethod
    def from_texts(cls, texts: list[str], embedding: Embeddings, metadatas: list[dict[str, Any]] | None = None,
                   *, ids: list[str] | None = None, path: str | os.PathLike[str] | None = None,
                   **kwargs: Any) -> LLM2VecVectorStore:
        """A new store (at ``path``, or temporary) holding ``texts``."""
        store = cls(embedding, path, **kwargs)
        store.add_texts(texts, metadatas, ids=ids)
        return store

    def add_texts(self, texts: Iterable[str], metadatas: list[dict[str, Any]] | None = None, *,
                  ids: list[str] | None = None, **kwargs: Any) -> list[str]:
        """Embed and store; an existing id is replaced, a missing one gets a new uuid."""
        texts = list(texts)
        ids = list(ids) if ids is not None else [None] * len(texts)
        metadatas = [dict(m or {}) for m in metadatas] if metadatas is not None else [{} for _ in texts]
        if not (len(ids) == len(metadatas) == len(texts)):
            raise ValueError(f"{len(texts)} texts, {len(metadatas)} metadatas and {len(ids)} ids")
        ids = [str(i) if i is not None else uuid.uuid4().hex for i in ids]
        last = {doc_id: n for n, doc_id in enumerate(ids)}  # a repeated id: the last one wins
        keep = sorted(last.values())
        batch_size = self._embedding.batch_size if isinstance(self._embedding, LLM2VecEmbeddings) else 32
        self._worker.run(self._index.add_texts, [texts[n] for n in keep], [metadatas[n] for n in keep],
                         ids=[ids[n] for n in keep], batch_size=batch_size)
        return ids

    def delete(self, ids: list[str] | None = None, **kwargs: Any) -> bool | None:
        """Remove these ids (unknown ones are ignored); ``None`` removes everything."""
        if ids is None:
            ids = self._worker.run(lambda: [r[0] for r in self._index.meta.conn.execute("SELECT doc_id FROM chunks")])
        self._worker.run(self._index.delete, [str(i) for i in ids])
        return True

    def get_by_ids(self, ids: Sequence[str], /) -> list[Document]:
        """Documents in the order asked for; unknown ids are left out."""
        return [_document(r) for r in self._worker.run(self._index.get_by_ids, [str(i) for i in ids])]

    async def aget_by_ids(self, ids: Sequence[str], /) -> list[Document]:
        return [_document(r) for r in await self._worker.arun(self._index.get_by_ids, [str(i) for i in ids])]

    # ------------------------------------------------------------------ searching
    def _hits(self, vector: Sequence[float], k: int, filter: Any) -> list[Hit]:
        if k < 1:
            return []
        return self._worker.run(self._index.search_by_vector, np.asarray(vector, dtype=np.float32), k, filter)

    def _text_hits(self, query: str, k: int, filter: Any, options: dict[str, Any]) -> list[Hit]:
        """A text search in the store's mode (``mode``, ``alpha``, ``fusion`` from the call override it)."""
        if k < 1:
            return []
        mode = options.get("mode") or self.mode
        SearchSettings.of(mode, options.get("alpha"), options.get("fusion"))  # bad settings fail before embedding
        vector = None if mode == "lexical" else np.asarray(self._embedding.embed_query(query), dtype=np.float32)
        return self._worker.run(self._index.search, query, k, filter, None, mode, options.get("alpha"),
                                options.get("fusion"), vector)

    def similarity_search_with_score_by_vector(self, embedding: list[float], k: int = 4, filter: Any = None,
                                               **kwargs: Any) -> list[tuple[Document, float]]:
        """Documents with their cosine similarity to ``embedding`` (higher is closer)."""
        return [(_document(h), float(h.score)) for h in self._hits(embedding, k, filter)]

    def similarity_search_with_score(self, query: str, k: int = 4, filter: Any = None,
                                     **kwargs: Any) -> list[tuple[Document, float]]:
        """Documents with their score for the query: fused in ``hybrid`` mode (the default), cosine in
        ``dense``, BM25 in ``lexical``; ``mode=``, ``alpha=``, ``fusion=`` choose per call."""
        return [(_document(h), float(h.score)) for h in self._text_hits(query, k, filter, kwargs)]

    def similarity_search(self, query: str, k: int = 4, filter: Any = None, **kwargs: Any) -> list[Document]:
        return [doc for doc, _ in self.similarity_search_with_score(query, k, filter, **kwargs)]

    def _similarity_search_with_relevance_scores(self, query: str, k: int = 4,
                                                 **kwargs: Any) -> list[tuple[Document, float]]:
        """Relevance in [0, 1] for every mode: cosine mapped from [-1, 1]; fused scores as they are
        (convex) or over their largest possible value (rrf); BM25 as s / (1 + s)."""
        settings = SearchSettings.of(kwargs.get("mode") or self.mode, kwargs.get("alpha"), kwargs.get("fusion"))
        hits = self._text_hits(query, k, kwargs.get("filter"), kwargs)
        if settings.mode == "dense":
            scale = lambda s: (s + 1.0) / 2.0  # noqa: E731
        elif settings.mode == "lexical":
            scale = lambda s: s / (1.0 + s) if s > 0 else 0.0  # noqa: E731
        elif settings.fusion == "rrf":
            scale = lambda s: min(1.0, s * (settings.rrf_k + 1))  # noqa: E731
        else:
            scale = lambda s: min(1.0, max(0.0, s))  # noqa: E731
        return [(_document(h), scale(float(h.score))) for h in hits]

    def similarity_search_by_vector(self, embedding: list[float], k: int = 4, filter: Any = None,
                                    **kwargs: Any) -> list[Document]:
        return [doc for doc, _ in self.similarity_search_with_score_by_vector(embedding, k, filter)]

    def _select_relevance_score_fn(self) -> Callable[[float], float]:
        """Cosine similarity in [-1, 1] mapped to a relevance in [0, 1]."""
        return lambda score: (score + 1.0) / 2.0

    def max_marginal_relevance_search_by_vector(self, embedding: list[float], k: int = 4, fetch_k: int = 20,
                                                lambda_mult: float = 0.5, filter: Any = None,
                                                **kwargs: Any) -> list[Document]:
        """Fetch ``fetch_k`` nearest, then pick ``k`` that are relevant yet unlike each other."""
        hits = self._hits(embedding, max(fetch_k, k), filter)
        if not hits:
            return []
        vectors = self._worker.run(self._index.get_vectors, [h.id for h in hits])
        chosen = maximal_marginal_relevance(np.asarray(embedding, dtype=np.float32), vectors.tolist(),
                                            lambda_mult=lambda_mult, k=min(k, len(hits)))
        return [_document(hits[i]) for i in chosen]

    def max_marginal_relevance_search(self, query: str, k: int = 4, fetch_k: int = 20, lambda_mult: float = 0.5,
                                      filter: Any = None, **kwargs: Any) -> list[Document]:
        return self.max_marginal_relevance_search_by_vector(
            self._embedding.embed_query(query), k, fetch_k, lambda_mult, filter
        )


def _document(record: Record) -> Document:
    return Document(page_content=record.text, metadata=dict(record.metadata), id=record.id)
