"""The Qdrant backend: vectors in a Qdrant collection, on a server or in local mode.

Why Qdrant (see docs/scaling.md): its client has a local mode (pure Python, a
folder on disk) that runs the same API in tests with no server, and the
server shards and replicates collections across machines for production.

Each point has a UUID derived from its index's ``index_uuid`` and the chunk's
id, its normalised vector and a payload in the layout LangChain's Qdrant store
reads (``page_content``, ``metadata``) plus ``doc_id``/``source``/``chunk_id``
and the owning index, so other tools can query the collection directly and
several indexes (say one per machine or source) can share one collection.
SQLite stays the source of truth: after a write is committed there, it is
upserted here and ``backend_rows_version`` records that the collection caught
up. An interrupted run leaves that version behind; the next writer copies every
stored vector again (no re-embedding).
"""
from __future__ import annotations

import json
import os
from collections.abc import Iterator, Sequence
from typing import TYPE_CHECKING, Any

import numpy as np

from ..errors import LLM2VecError
from .backend import VectorBackend
from .records import normalise
from .faults import crash_point
from .records import Record, record_from_row, stable_id

if TYPE_CHECKING:  # pragma: no cover
    from .index import Index
    from .records import ChunkRow

UPSERT_BATCH = 256
OWNER_KEY = "llm2vec_rag_index"  # payload field: which index a point belongs to
CHUNK_KEY = "chunk_id"  # payload field: the chunk's id in the index's SQLite
HNSW_EF = 96
LOCAL_FOLDER = "qdrant"


def _models():
    try:
        from qdrant_client import models
    except ImportError:
        raise LLM2VecError("the qdrant backend needs qdrant-client: pip install 'llm2vec-rag[qdrant]'") from None
    return models


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0][:200] if text else type(exc).__name__


class QdrantBackend(VectorBackend):
    name = "qdrant"

    def __init__(self, index: Index) -> None:
        super().__init__(index)
        self._client: Any = None
        self._stale = index.info.get("backend_rows_version") != index.info.get("rows_version")
        self._warned = False

    # ------------------------------------------------------------------ connection
    @property
    def url(self) -> str | None:
        return self.index.info.get("qdrant_url")

    @property
    def collection(self) -> str:
        return str(self.index.info.get("qdrant_collection") or "llm2vec-rag")

    def where(self) -> str:
        return self.url or f"local Qdrant at {self.index.path / LOCAL_FOLDER}"

    @property
    def client(self) -> Any:
        if self._client is None:
            _models()
            from qdrant_client import QdrantClient

            try:
                if self.url and self.url.startswith("file://"):  # a local-mode folder several indexes share
                    client = QdrantClient(path=self.url[len("file://"):])
                elif self.url:
                    client = QdrantClient(url=self.url, api_key=os.environ.get("QDRANT_API_KEY") or None,
                                          timeout=60)
                    client.get_collections()  # fail here, clearly, when the server is unreachable
                else:
                    client = QdrantClient(path=str(self.index.path / LOCAL_FOLDER))
            except Exception as exc:
                hint = ("another process has this local Qdrant folder open (local mode allows one); "
                        "use a Qdrant server (--url) for concurrent access"
                        if "already accessed" in str(exc) else _first_line(exc))
                raise LLM2VecError(f"cannot open {self.where()}: {hint}") from None
            self._client = client
        return self._client

    def close(self) -> None:
        if self._client is not None:
            try:
                self._client.close()
            finally:
                self._client = None

    def _call(self, what: str, fn: Any, *args: Any, **kwargs: Any) -> Any:
        try:
            return fn(*args, **kwargs)
        except LLM2VecError:
            raise
        except Exception as exc:
            raise LLM2VecError(f"Qdrant ({self.where()}, collection {self.collection}): {what} failed: "
                               f"{_first_line(exc)}") from None

    # ------------------------------------------------------------------ collection
    def _collection_config(self) -> dict[str, Any]:
        models = _models()
        config: dict[str, Any] = {
            "vectors_config": models.VectorParams(size=self.index.dim, distance=models.Distance.COSINE),
            "hnsw_config": models.HnswConfigDiff(m=32, ef_construct=80),
        }
        if self.index.index_type == "sq8":
            config["quantization_config"] = models.ScalarQuantization(
                scalar=models.ScalarQuantizationConfig(type=models.ScalarType.INT8, always_ram=True))
        return config

    def _exists(self) -> bool:
        return bool(self._call("checking the collection", self.client.collection_exists, self.collection))

    @property
    def owner(self) -> str:
        """This index's mark on its points: several indexes may share one collection."""
        owner = self.index.info.get("index_uuid")
        if not owner:  # an index from before owners: give it one (a writer is syncing)
            import uuid

            owner = uuid.uuid4().hex
            with self.index.meta.transaction() as conn:
                self.index.meta.set_info({"index_uuid": owner}, conn)
            self.index.info = self.index.meta.info()
        return str(owner)

    def point_id(self, chunk_id: int) -> str:
        """The point's UUID: derived from the owner and the chunk id, so indexes sharing a collection never
        collide (two machines may index the same path)."""
        import uuid

        return str(uuid.uuid5(uuid.UUID(hex=self.owner), str(int(chunk_id))))

    def _own(self) -> Any:
        models = _models()
        return models.FieldCondition(key=OWNER_KEY, match=models.MatchValue(value=self.owner))

    def _prepare_collection(self) -> None:
        """Create the collection, or empty this index's part of an existing one (others' points stay)."""
        models = _models()
        config = self._collection_config()
        if not self._exists():
            self._call("creating the collection", self.client.create_collection, self.collection, **config)
            if self.url and not self.url.startswith("file://"):  # local mode has no payload indexes
                self._call("indexing the owner field", self.client.create_payload_index, self.collection,
                           OWNER_KEY, field_schema=models.PayloadSchemaType.KEYWORD)
            return
        info = self._call("reading the collection", self.client.get_collection, self.collection)
        size = getattr(getattr(info.config.params, "vectors", None), "size", None)
        if size is not None and int(size) != self.index.dim:
            raise LLM2VecError(f"the Qdrant collection {self.collection} holds {size}-d vectors, this index makes "
                               f"{self.index.dim}-d ones: use another --collection")
        self._call("clearing this index's points", self.client.delete, self.collection,
                   points_selector=models.FilterSelector(filter=models.Filter(must=[self._own()])), wait=True)
        if "quantization_config" in config:
            self._call("setting quantization", self.client.update_collection, self.collection,
                       quantization_config=config["quantization_config"])

    def _points(self, records: Sequence[Record], ids: Sequence[int], vectors: np.ndarray) -> list[Any]:
        models = _models()
        owner = self.owner
        return [models.PointStruct(id=self.point_id(i), vector=v.tolist(), payload={
            OWNER_KEY: owner, CHUNK_KEY: int(i), "doc_id": r.id, "page_content": r.text, "source": r.source, "chunk": r.chunk, "heading": r.heading,
            "page": r.page, "metadata": json.loads(json.dumps(r.metadata, default=str))})
            for r, i, v in zip(records, ids, vectors)]

    def _upsert(self, points: list[Any]) -> None:
        for s in range(0, len(points), UPSERT_BATCH):
            self._call("upserting vectors", self.client.upsert, self.collection, points=points[s : s + UPSERT_BATCH],
                       wait=True)

    def _stored_batches(self) -> Iterator[list[Any]]:
        meta, dim = self.index.meta, self.index.dim
        for ids, vectors in meta.iter_vectors(dim, batch=1024):
            rows = meta.rows_by_ids(ids.tolist())
            keep = [k for k, i in enumerate(ids) if int(i) in rows]
            records = [record_from_row(rows[int(ids[k])]) for k in keep]
            yield self._points(records, [int(ids[k]) for k in keep], normalise(vectors[keep]))

    def _full_sync(self) -> None:
        """Copy every stored vector into a fresh collection (first build, switch, or after a crash)."""
        self._prepare_collection()
        for points in self._stored_batches():
            self._upsert(points)
            crash_point("qdrant-batch")
        self._stale = False
        self._record_synced()

    def _record_synced(self) -> None:
        ix = self.index
        with ix.meta.transaction() as conn:
            rows_version = json.loads(conn.execute("SELECT value FROM info WHERE key='rows_version'").fetchone()[0])
            ix.meta.set_info({"backend_rows_version": rows_version}, conn)
        ix.info = ix.meta.info()

    def drop(self) -> None:
        """Remove this index's points (``--rebuild``), and the collection once nothing else is in it."""
        if not self._exists():
            return
        models = _models()
        self._call("removing this index's points", self.client.delete, self.collection,
                   points_selector=models.FilterSelector(filter=models.Filter(must=[self._own()])), wait=True)
        if not self._call("counting", self.client.count, self.collection, exact=True).count:
            self._call("dropping the empty collection", self.client.delete_collection, self.collection)

    # ------------------------------------------------------------------ VectorBackend
    @property
    def pending(self) -> bool:
        return self._stale

    def mark_stale(self) -> None:
        self._stale = True

    def reconcile(self) -> None:
        if self._stale:
            if self.index.meta.count() or self.index.info.get("rows_version"):
                self.index.log(f"note: the Qdrant collection {self.collection} is behind the metadata "
                                "(an interrupted run, or a new backend): copying the stored vectors")
            self._full_sync()

    def prepare(self) -> None:
        if self._stale:
            self._full_sync()  # before the write, so only the write itself is left to apply

    def apply(self, rows: Sequence[ChunkRow], removed: Sequence[int]) -> None:
        if self._stale:
            self._full_sync()
            return
        models = _models()
        added = {stable_id(r.doc_id) for r in rows}
        gone = [int(i) for i in removed if int(i) not in added]
        if gone:
            self._call("deleting vectors", self.client.delete, self.collection,
                       points_selector=models.PointIdsList(points=[self.point_id(i) for i in gone]), wait=True)
        if rows:
            records = [Record(id=r.doc_id, text=r.text, source=r.source, chunk=r.chunk, heading=r.heading,
                              page=r.page, metadata=r.metadata) for r in rows]
            self._upsert(self._points(records, [stable_id(r.doc_id) for r in rows],
                                      normalise(np.stack([r.vector for r in rows]))))
        crash_point("qdrant-applied")
        self._record_synced()

    def save(self) -> None:
        if self._stale:
            self._full_sync()

    def count(self) -> int:
        if not self._exists():
            return 0
        return int(self._call("counting", self.client.count, self.collection, exact=True,
                              count_filter=_models().Filter(must=[self._own()])).count)

    def search(self, queries: np.ndarray, k: int, allowed: np.ndarray | None) -> tuple[np.ndarray, np.ndarray]:
        models = _models()
        if self._stale and self.index.writable:
            self._full_sync()
        if self._stale and not self._warned:
            self.index.log(f"warning: the Qdrant collection {self.collection} is behind the metadata; "
                            "run `llm2vec-rag index` again to repair it")
            self._warned = True
        if not self._exists():
            return np.zeros((len(queries), 0), np.float32), np.zeros((len(queries), 0), np.int64)
        must: list[Any] = [self._own()]
        if allowed is not None:
            must.append(models.HasIdCondition(has_id=[self.point_id(i) for i in allowed]))
        query_filter = models.Filter(must=must)
        if not self.url or self.url.startswith("file://"):
            params = None  # local mode always searches exactly (and warns about parameters)
        elif self.index.index_type == "flat":
            params = models.SearchParams(exact=True)
        elif self.index.index_type == "sq8":
            params = models.SearchParams(hnsw_ef=HNSW_EF, quantization=models.QuantizationSearchParams(rescore=True))
        else:
            params = models.SearchParams(hnsw_ef=HNSW_EF)
        scores = np.full((len(queries), k), -np.inf, dtype=np.float32)
        ids = np.full((len(queries), k), -1, dtype=np.int64)
        for row, vector in enumerate(np.asarray(queries, dtype=np.float32)):
            result = self._call("searching", self.client.query_points, self.collection, query=vector.tolist(),
                                limit=k, query_filter=query_filter, search_params=params, with_payload=[CHUNK_KEY])
            for col, point in enumerate(result.points[:k]):
                scores[row, col], ids[row, col] = point.score, int(point.payload[CHUNK_KEY])
        return scores, ids

    def describe(self) -> dict[str, Any]:
        return {"backend": self.name, "qdrant_url": self.url, "qdrant_collection": self.collection,
                "qdrant_owner": self.index.info.get("index_uuid"),
                "qdrant_local_path": None if self.url else str(self.index.path / LOCAL_FOLDER)}

