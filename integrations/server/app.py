"""The FastAPI application: OpenAI, TEI and Ollama embedding routes, search, health, info and metrics.

Build it with :func:`create_app` from a *loader* (a function returning
:class:`~.engine.Served`); the engine thread calls it at start-up, so the port
answers ``/health`` with 503 while the weights load. Handlers only parse,
queue and reply: all model work runs on the engine thread (see ``engine.py``).
"""
from __future__ import annotations

import asyncio
import contextlib
import hmac
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from typing import Any

from llm2vec_rag import __version__
from llm2vec_rag.errors import LLM2VecError
from llm2vec_rag.index.hybrid import FUSIONS, MODES, SearchSettings
from llm2vec_rag.integrations._shared import require

from .engine import Engine, InputTooLongError, NotReadyError, QueueFullError, Served
from .errors import ApiError, error_body, family
from .metrics import Metrics
from .protocol import (EmbedSpec, bad, check_dimensions, openai_body, parse_ollama, parse_openai, parse_tei,
                       shape_vectors)
from .settings import ServerSettings

fastapi = require("fastapi", "server", "fastapi")
from fastapi import Request  # noqa: E402  (string annotations of the routes resolve to it)

OPEN_PATHS = frozenset({"/health", "/metrics"})
DISCONNECT_POLL_S = 0.25
RENDER_IN_THREAD = 64  # vectors; bigger replies are serialised off the event loop


@dataclass
class ModelCard:
    """What /info and /v1/models say about one served encoder."""

    name: str
    dim: int
    max_length: int
    vocab_size: int
    pooling_mode: str
    fingerprint: str
    query_instruction: str
    document_instruction: str
    adapters: list[str]
    engine: str
    dtype: str
    device: str
    dtype_reason: str | None = None  # why this dtype: "auto: bfloat16 (AMX: ...)", "requested"; None: not known


def dtype_reason(requested: str | None, device: Any) -> str | None:
    """Why the models run in their dtype: ``auto``'s choice and its reason (memoised: no second calibration)."""
    if requested is None:
        return None
    if requested != "auto":
        return f"requested: {requested}"
    import torch

    from llm2vec_rag.runtime import auto_dtype_choice

    return f"auto: {auto_dtype_choice(torch.device(str(device))).describe()}"


def model_card(name: str, encoder: Any, requested_dtype: str | None = None) -> ModelCard:
    params = next(iter(encoder.model.parameters()), None)
    return ModelCard(name=name, dim=int(encoder.dim), max_length=int(encoder.max_length),
                     vocab_size=int(len(encoder.tokenizer)), pooling_mode=str(encoder.pooling_mode),
                     fingerprint=str(encoder.fingerprint()), query_instruction=str(encoder.query_instruction or ""),
                     document_instruction=str(encoder.document_instruction or ""),
                     adapters=[str(a) for a in getattr(encoder, "adapters", [])],
                     engine=str(getattr(encoder, "engine", "?")),
                     dtype=str(params.dtype).removeprefix("torch.") if params is not None else "?",
                     device=str(encoder.device), dtype_reason=dtype_reason(requested_dtype, encoder.device))


@dataclass
class ServerState:
    engine: Engine
    settings: ServerSettings
    metrics: Metrics
    aliases: dict[str, str] = field(default_factory=dict)  # extra names a client may send (e.g. "name:latest")
    cards: dict[str, ModelCard] = field(default_factory=dict)
    index: dict | None = None
    created: int = field(default_factory=lambda: int(time.time()))

    @property
    def default_model(self) -> str:
        return next(iter(self.cards))

    def resolve(self, requested: str | None) -> str:
        if not requested:
            return self.default_model
        for name in (requested, requested.removesuffix(":latest")):
            if name in self.cards:
                return name
            if name in self.aliases:
                return self.aliases[name]
        raise ApiError(404, f"The model `{requested}` does not exist; this server serves: "
                            f"{', '.join(self.cards)}", param="model", code="model_not_found")


class ClientGone(Exception):
    """The client closed the connection while its request waited."""


def _ready(state: ServerState) -> None:
    if state.engine.state != "ready":
        raise ApiError(503, "the model is still loading; retry shortly" if state.engine.state == "loading"
                       else f"the server is not serving ({state.engine.state})",
                       headers={"Retry-After": str(state.settings.retry_after_s)})


async def _await(request: Any, future: Any) -> Any:
    """The engine's result; cancels the work (and raises ClientGone) if the client disconnects first."""
    waiter = asyncio.wrap_future(future)
    try:
        while True:
            done, _ = await asyncio.wait({waiter}, timeout=DISCONNECT_POLL_S)
            if done:
                return waiter.result()
            if await request.is_disconnected():
                future.cancel()
                raise ClientGone()
    except asyncio.CancelledError:
        future.cancel()
        raise


def _submit(state: ServerState, fn: Callable[[], Any]) -> Any:
    try:
        return fn()
    except QueueFullError as exc:
        raise ApiError(429, str(exc), code="rate_limit_exceeded",
                       headers={"Retry-After": str(state.settings.retry_after_s)}) from None
    except NotReadyError as exc:
        raise ApiError(503, str(exc), headers={"Retry-After": str(state.settings.retry_after_s)}) from None


async def embed(state: ServerState, request: Any, spec: EmbedSpec, param: str = "input"):
    """Queue a parsed request, wait for it, shape the vectors: (model name, vectors, tokens)."""
    _ready(state)
    name = state.resolve(spec.model)
    card = state.cards[name]
    check_dimensions(spec, card.dim)
    for i, piece in enumerate(spec.pieces):
        if not isinstance(piece, str):
            worst = max(piece)
            if min(piece) < 0 or worst >= card.vocab_size:
                raise bad(f"'{param}[{i}]' holds a token id outside the model's vocabulary (0..{card.vocab_size - 1})",
                          param)
    instruction = card.document_instruction if spec.input_type == "document" else (
        card.query_instruction if spec.instruction is None else spec.instruction)
    pairs = [(instruction, piece) for piece in spec.pieces]
    future = _submit(state, lambda: state.engine.submit_embed(name, pairs, truncate=spec.truncate))
    try:
        result = await _await(request, future)
    except InputTooLongError as exc:
        raise ApiError(400, str(exc), param=param, code="context_length_exceeded") from None
    return name, shape_vectors(result.vectors, spec, card.dim), int(sum(result.tokens))


def search_settings(body: dict) -> SearchSettings:
    """``mode``, ``alpha`` and ``fusion`` of a /v1/search body, checked (400 naming the field), defaults filled in."""
    mode, alpha, fusion = body.get("mode"), body.get("alpha"), body.get("fusion")
    if mode is not None and (not isinstance(mode, str) or mode not in MODES):
        raise bad(f"'mode' must be one of {', '.join(MODES)}, got {mode!r}", "mode")
    if fusion is not None and (not isinstance(fusion, str) or fusion not in FUSIONS):
        raise bad(f"'fusion' must be one of {', '.join(FUSIONS)}, got {fusion!r}", "fusion")
    if alpha is not None and (isinstance(alpha, bool) or not isinstance(alpha, (int, float))
                              or not 0.0 <= float(alpha) <= 1.0):
        raise bad(f"'alpha' must be a number from 0 to 1 (the dense side's weight), got {alpha!r}", "alpha")
    return SearchSettings.of(mode, None if alpha is None else float(alpha), fusion)


def create_app(load: Callable[[], Served], settings: ServerSettings | None = None,
               on_failure: Callable[[BaseException], None] | None = None,
               aliases: dict[str, str] | None = None) -> Any:
    """The ASGI app. ``on_failure`` is called (from the engine thread) when loading fails."""
    io = JsonIO(settings or ServerSettings())
    state = server_state(load, io.settings, on_failure, aliases)
    engine = state.engine

    @contextlib.asynccontextmanager
    async def lifespan(_app):
        engine.start()
        try:
            yield
        finally:
            await asyncio.get_running_loop().run_in_executor(None, engine.stop)

    app = fastapi.FastAPI(title="llm2vec-rag", version=__version__, lifespan=lifespan, docs_url=None,
                          redoc_url=None, openapi_url=None)
    app.state.server = state
    for add_routes in (add_error_handlers, add_openai_routes, add_tei_routes, add_ollama_routes, add_search_route,
                       add_operation_routes):
        add_routes(app, state, io)
    return Gate(app, state)


def server_state(load: Callable[[], Served], settings: ServerSettings,
                 on_failure: Callable[[BaseException], None] | None, aliases: dict[str, str] | None) -> ServerState:
    """The engine (which calls ``load`` on its own thread) and the state every route shares."""
    metrics = Metrics()
    holder: dict[str, ServerState] = {}

    def loaded() -> Served:
        served = load()
        cards = {name: model_card(name, enc, served.dtype) for name, enc in served.models.items()}
        index = None
        if served.index is not None:
            idx = served.index
            index = {"path": str(idx.path), "chunks": len(idx), "model": idx.info.get("model"),
                     "fingerprint": idx.info.get("fingerprint"), "dim": idx.dim,
                     "served_model": served.index_model}
        state = holder["state"]
        state.cards, state.index = cards, index
        return served

    engine = Engine(loaded, max_batch_tokens=settings.max_batch_tokens,
                    max_pending=settings.max_concurrent_requests, on_batch=metrics.observe_batch,
                    on_failure=on_failure)
    state = ServerState(engine=engine, settings=settings, metrics=metrics, aliases=dict(aliases or {}))
    holder["state"] = state
    metrics.gauges(lambda: engine.queued, lambda: engine.pending, lambda: engine.dropped,
                   lambda: 1.0 if engine.state == "ready" else 0.0)
    return state


class JsonIO:
    """Replies serialised with orjson, and request bodies read within ``--max-request-bytes``."""

    def __init__(self, settings: ServerSettings) -> None:
        self.orjson = require("orjson", "server", "orjson")
        self.settings = settings

    def reply(self, content: Any, status: int = 200) -> Any:
        from fastapi.responses import Response

        return Response(self.orjson.dumps(content, option=self.orjson.OPT_SERIALIZE_NUMPY), status_code=status,
                        media_type="application/json")

    async def reply_big(self, content: Any, count: int) -> Any:
        from fastapi.responses import Response

        if count < RENDER_IN_THREAD:
            return self.reply(content)
        orjson = self.orjson
        body = await asyncio.get_running_loop().run_in_executor(
            None, lambda: orjson.dumps(content, option=orjson.OPT_SERIALIZE_NUMPY))
        return Response(body, media_type="application/json")

    async def read_json(self, request) -> dict:
        limit = self.settings.max_request_bytes
        declared = request.headers.get("content-length")
        if declared and declared.isdigit() and int(declared) > limit:
            raise ApiError(413, f"request body is {declared} bytes, the limit is {limit} "
                                f"(--max-request-bytes); split the request", code="request_too_large")
        chunks, size = [], 0
        async for chunk in request.stream():
            size += len(chunk)
            if size > limit:
                raise ApiError(413, f"request body is over the limit of {limit} bytes (--max-request-bytes); "
                                    f"split the request", code="request_too_large")
            chunks.append(chunk)
        try:
            body = self.orjson.loads(b"".join(chunks))
        except self.orjson.JSONDecodeError as exc:
            raise bad(f"request body is not valid JSON: {exc}") from None
        if not isinstance(body, dict):
            raise bad("request body must be a JSON object")
        return body


def add_error_handlers(app: Any, state: ServerState, io: JsonIO) -> None:
    from fastapi.responses import JSONResponse, Response
    from starlette.exceptions import HTTPException as StarletteHTTPException

    @app.exception_handler(ApiError)
    async def api_error(request, exc: ApiError):
        return JSONResponse(error_body(request.url.path, exc), status_code=exc.status, headers=exc.headers)

    @app.exception_handler(StarletteHTTPException)
    async def http_error(request, exc):
        """Unknown routes (404) and wrong methods (405) in the route family's envelope, not FastAPI's ``detail``."""
        path, method = request.url.path, request.method
        if exc.status_code == 404:
            message, code = f"Invalid URL ({method} {path}): this server has no such route", None  # OpenAI's words
        elif exc.status_code == 405:
            allowed = (exc.headers or {}).get("Allow") or (exc.headers or {}).get("allow") or ""
            message = f"Method {method} is not allowed on {path}" + (f"; use {allowed}" if allowed else "")
            code = "method_not_allowed"
        else:
            message, code = str(exc.detail), None
        err = ApiError(exc.status_code, message, code=code, headers=dict(exc.headers or {}))
        return JSONResponse(error_body(path, err), status_code=exc.status_code, headers=err.headers)

    @app.exception_handler(ClientGone)
    async def client_gone(_request, _exc):
        return Response(status_code=499)

    @app.exception_handler(Exception)
    async def internal(request, exc: Exception):
        message = f"internal error: {type(exc).__name__}: {exc}".splitlines()[0][:500]
        return JSONResponse(error_body(request.url.path, ApiError(500, message)), status_code=500)


def add_openai_routes(app: Any, state: ServerState, io: JsonIO) -> None:
    @app.post("/v1/embeddings")
    async def openai_embeddings(request: Request):
        spec = parse_openai(await io.read_json(request), state.settings)
        name, vectors, tokens = await embed(state, request, spec)
        return await io.reply_big(openai_body(vectors, spec, name, tokens), len(vectors))

    @app.get("/v1/models")
    async def openai_models():
        _ready(state)
        return io.reply({"object": "list", "data": [
            {"id": n, "object": "model", "created": state.created, "owned_by": "llm2vec-rag"} for n in state.cards]})

    @app.get("/v1/models/{model_id:path}")
    async def openai_model(model_id: str):
        _ready(state)
        name = state.resolve(model_id)
        return io.reply({"id": name, "object": "model", "created": state.created, "owned_by": "llm2vec-rag"})


def add_tei_routes(app: Any, state: ServerState, io: JsonIO) -> None:
    async def tei_embed(request: Request):
        spec = parse_tei(await io.read_json(request), state.settings)
        _name, vectors, _tokens = await embed(state, request, spec, param="inputs")
        return await io.reply_big(vectors, len(vectors))

    app.post("/embed")(tei_embed)
    app.post("/")(tei_embed)  # TEI answers on the root too (huggingface_hub's InferenceClient posts there)


def add_ollama_routes(app: Any, state: ServerState, io: JsonIO) -> None:
    @app.post("/api/embed")
    async def ollama_embed(request: Request):
        started = time.perf_counter_ns()
        spec = parse_ollama(await io.read_json(request), state.settings)
        name, vectors, tokens = await embed(state, request, spec)
        return await io.reply_big({"model": spec.model or name, "embeddings": vectors,
                                   "total_duration": time.perf_counter_ns() - started, "load_duration": 0,
                                   "prompt_eval_count": tokens}, len(vectors))

    @app.post("/api/embeddings")
    async def ollama_embeddings_legacy(request: Request):
        spec = parse_ollama(await io.read_json(request), state.settings, legacy=True)
        _name, vectors, _tokens = await embed(state, request, spec, param="prompt")
        return io.reply({"embedding": vectors[0]})

    @app.get("/api/tags")
    async def ollama_tags():
        _ready(state)
        return io.reply({"models": [{"name": n, "model": n, "details": {"family": "llm2vec", "format": "safetensors"}}
                                    for n in state.cards]})


def add_search_route(app: Any, state: ServerState, io: JsonIO) -> None:
    settings = state.settings

    @app.post("/v1/search")
    async def search(request: Request):
        body = await io.read_json(request)
        _ready(state)
        if state.index is None:
            raise ApiError(400, "this server has no index: start it with --index DIR", code="no_index")
        query = body.get("query")
        if not isinstance(query, str) or not query.strip():
            raise bad("'query' must be a non-empty string", "query")
        k = body.get("k", 10)
        if isinstance(k, bool) or not isinstance(k, int) or not 1 <= k <= settings.max_search_k:
            raise bad(f"'k' must be an integer from 1 to {settings.max_search_k}", "k")
        where = body.get("where")
        if where is not None and not isinstance(where, (str, dict)):
            raise bad("'where' must be a path glob (string) or an object of field equalities", "where")
        instruction = body.get("instruction")
        if instruction is not None and not isinstance(instruction, str):
            raise bad("'instruction' must be a string", "instruction")
        ranking = search_settings(body)

        def run(served: Served):
            return served.index.search(query, k=k, where=where, instruction=instruction, mode=ranking.mode,
                                       alpha=ranking.alpha, fusion=ranking.fusion)

        future = _submit(state, lambda: state.engine.submit_call(run))
        try:
            hits = await _await(request, future)
        except LLM2VecError as exc:
            raise bad(str(exc).splitlines()[0], "mode" if "mode" in str(exc) else None) from None
        return io.reply({"object": "list", "data": [h.json_fields() for h in hits], "model": state.index.get("model"),
                         "query": query, "k": k, "mode": ranking.mode, "alpha": ranking.alpha,
                         "fusion": ranking.fusion})


def add_operation_routes(app: Any, state: ServerState, io: JsonIO) -> None:
    from fastapi.responses import Response

    engine = state.engine

    @app.get("/health")
    async def health():
        ready = engine.state == "ready"
        return io.reply({"status": "ok" if ready else engine.state}, status=200 if ready else 503)

    @app.get("/info")
    async def info():
        return io.reply({"version": __version__, "state": engine.state,
                         "default_model": state.default_model if state.cards else None,
                         "models": [asdict(c) for c in state.cards.values()], "index": state.index,
                         "search_modes": list(MODES), "search_fusions": list(FUSIONS),
                         "limits": state.settings.public(), "load_seconds": engine.load_seconds})

    @app.get("/metrics")
    async def prometheus():
        body, content_type = state.metrics.render()
        return Response(body, media_type=content_type)


class Gate:
    """Outermost ASGI layer: bearer-key check (not on /health, /metrics) and request counting by outcome."""

    def __init__(self, app: Any, state: ServerState) -> None:
        self.app = app
        self.server_state = state

    def __getattr__(self, name: str) -> Any:  # .state.server etc. reach the FastAPI app
        return getattr(self.app, name)

    async def __call__(self, scope, receive, send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        path = scope.get("path", "")
        status = [500]

        async def counting_send(message):
            if message["type"] == "http.response.start":
                status[0] = int(message["status"])
            await send(message)

        try:
            key = self.server_state.settings.api_key
            if key and path not in OPEN_PATHS and not _authorised(scope, key):
                from fastapi.responses import JSONResponse

                err = ApiError(401, "missing or wrong API key: send 'Authorization: Bearer KEY'",
                               code="invalid_api_key")
                response = JSONResponse(error_body(path, err), status_code=401,
                                        headers={"WWW-Authenticate": "Bearer"})
                await response(scope, receive, counting_send)
                return
            await self.app(scope, receive, counting_send)
        finally:
            self.server_state.metrics.count(path, status[0])


def _authorised(scope, key: str) -> bool:
    for name, value in scope.get("headers", []):
        if name == b"authorization":
            scheme, _, token = value.decode("latin-1").partition(" ")
            return scheme.lower() == "bearer" and hmac.compare_digest(token.strip().encode(), key.encode())
    return False


__all__ = ["create_app", "ServerState", "ModelCard", "family"]
