"""The one thread that owns the models: it loads them, then packs queued requests into encode calls.

Every use of a model (and of the index, whose SQLite connection belongs to the
thread that opened it) happens on this thread, so the event loop is never
blocked by the model and the tokenizer is never shared between threads.

Dynamic batching: requests wait in a FIFO queue. Whenever the model is free the
worker takes the request at the front and then, while the next request is for
the same model and the token budget (``max_batch_tokens``, padded tokens
counted by the tokenizer) is not exceeded, the following ones too, and runs
them as one :meth:`LLM2Vec.encode` call, whose own length-sorted batching
packs the texts into model batches. A request bigger than the budget gets a
call of its own (the encoder splits it), it is never refused for its size.
The queue is bounded (``max_pending`` requests waiting or running);
:meth:`Engine.submit_embed` raises :class:`QueueFullError` beyond it. A request
whose future was cancelled (its client went away) is dropped unrun.
"""
from __future__ import annotations

import collections
import concurrent.futures
import contextlib
import inspect
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from llm2vec_rag.errors import LLM2VecError

Piece = str | list  # a text, or token ids of the served model's tokenizer


class QueueFullError(LLM2VecError):
    """The server already holds ``max_pending`` requests."""


class NotReadyError(LLM2VecError):
    """The models are still loading (or failed to load, or the server is stopping)."""


class InputTooLongError(LLM2VecError):
    """An input longer than ``max_length`` tokens in a request that asked for no truncation."""

    def __init__(self, position: int, tokens: int, limit: int) -> None:
        super().__init__(f"input {position} has at least {tokens} tokens, more than the model's limit of {limit} "
                         f"(send truncate=true to cut it at {limit})")
        self.position, self.tokens, self.limit = position, tokens, limit


@dataclass
class Served:
    """What the loader hands the worker: encoders by served name (the first is the default), an index."""

    models: dict[str, Any]
    index: Any = None
    index_model: str | None = None  # the served name whose encoder the index uses, None: its own
    dtype: str | None = None  # what the models were loaded with ("auto", "float32", ...), for /info; None: unknown


@dataclass
class EmbedResult:
    vectors: np.ndarray  # (n, dim) float32, as LLM2Vec.encode returns them (not normalised)
    tokens: list[int]  # tokens the model ran per input (instruction included, after truncation)
    queue_s: float
    inference_s: float
    batch_requests: int  # how many requests shared the encode call


@dataclass
class BatchStats:
    """One encode call, for metrics and tests."""

    requests: int
    inputs: int
    tokens: int
    inference_s: float
    queue_s: list[float]


@dataclass
class _EmbedJob:
    model: str
    pairs: list[tuple[str, Piece]]  # (instruction, text or token ids)
    truncate: bool
    future: concurrent.futures.Future
    enqueued: float = field(default_factory=time.perf_counter)
    tokenized: bool = False
    items: list[list[str]] = field(default_factory=list)
    tokens: list[int] = field(default_factory=list)
    error: BaseException | None = None


@dataclass
class _CallJob:
    fn: Callable[[Served], Any]
    future: concurrent.futures.Future
    enqueued: float = field(default_factory=time.perf_counter)


class Engine:
    """Owns the worker thread; thread-safe ``submit_*`` return :class:`concurrent.futures.Future`."""

    def __init__(self, load: Callable[[], Served], max_batch_tokens: int = 16384, max_pending: int = 512,
                 on_batch: Callable[[BatchStats], None] | None = None,
                 on_failure: Callable[[BaseException], None] | None = None) -> None:
        if max_batch_tokens < 1 or max_pending < 1:
            raise LLM2VecError("max_batch_tokens and max_pending must be at least 1")
        self._load = load
        self.max_batch_tokens = int(max_batch_tokens)
        self.max_pending = int(max_pending)
        self._on_batch = on_batch
        self._on_failure = on_failure
        self._queue: collections.deque[_EmbedJob | _CallJob] = collections.deque()
        self._cond = threading.Condition()
        self._pending = 0
        self._held = 0
        self._stopping = False
        self._thread: threading.Thread | None = None
        self.state = "loading"  # loading -> ready -> stopped, or failed
        self.error: BaseException | None = None
        self.served: Served | None = None
        self.ready = threading.Event()
        self.dropped = 0  # requests cancelled before they ran
        self.load_seconds: float | None = None

    # ------------------------------------------------------------------ lifecycle
    def start(self) -> Engine:
        self._thread = threading.Thread(target=self._run, name="llm2vec-rag-engine", daemon=True)
        self._thread.start()
        return self

    def stop(self, timeout: float | None = 30.0) -> None:
        """Finish what is queued, then end the worker."""
        with self._cond:
            self._stopping = True
            self._held = 0
            self._cond.notify_all()
        if self._thread is not None:  # a load in progress is not waited for (the thread is a daemon)
            self._thread.join(timeout if self.state != "loading" else 0.1)

    @contextlib.contextmanager
    def hold(self) -> Iterator[None]:
        """Queue requests without running them until the block ends (maintenance, deterministic tests)."""
        with self._cond:
            self._held += 1
        try:
            yield
        finally:
            with self._cond:
                self._held -= 1
                self._cond.notify_all()

    @property
    def pending(self) -> int:
        """Requests waiting or running."""
        return self._pending

    @property
    def queued(self) -> int:
        return len(self._queue)

    # ------------------------------------------------------------------ submitting
    def submit_embed(self, model: str, pairs: Sequence[tuple[str, Piece]], truncate: bool = True
                     ) -> concurrent.futures.Future:
        """Queue ``(instruction, text-or-ids)`` pairs for encoder ``model``; the future gives an :class:`EmbedResult`."""
        return self._submit(_EmbedJob(model, list(pairs), bool(truncate), concurrent.futures.Future()))

    def submit_call(self, fn: Callable[[Served], Any]) -> concurrent.futures.Future:
        """Run ``fn(served)`` on the worker thread, in queue order (index searches)."""
        return self._submit(_CallJob(fn, concurrent.futures.Future()))

    def _submit(self, job: _EmbedJob | _CallJob) -> concurrent.futures.Future:
        with self._cond:
            if self.state != "ready" or self._stopping:
                raise NotReadyError("the model is still loading" if self.state == "loading"
                                    else "the server is not serving (stopping or failed to load)")
            if self._pending >= self.max_pending:
                raise QueueFullError(f"the server is busy: {self._pending} requests are queued or running "
                                     f"(limit {self.max_pending}); retry shortly")
            self._pending += 1
            self._queue.append(job)
            self._cond.notify_all()
        job.future.add_done_callback(self._release)
        return job.future

    def _release(self, _future: concurrent.futures.Future) -> None:
        with self._cond:
            self._pending -= 1

    # ------------------------------------------------------------------ worker
    def _run(self) -> None:
        started = time.perf_counter()
        try:
            served = self._load()
            if not served.models:
                raise LLM2VecError("no model to serve")
        except BaseException as exc:  # reported by the caller as a one-line error
            self.error = exc
            self.state = "failed"
            self.ready.set()
            if self._on_failure is not None:
                self._on_failure(exc)
            return
        self.served = served
        self.load_seconds = time.perf_counter() - started
        with self._cond:
            self.state = "ready"
        self.ready.set()
        try:
            while True:
                group = self._next_group()
                if group is None:
                    break
                if isinstance(group, _CallJob):
                    self._run_call(group)
                else:
                    self._run_embed(group)
        finally:
            with self._cond:
                self.state = "stopped"
                leftover = list(self._queue)
                self._queue.clear()
            for job in leftover:
                if job.future.set_running_or_notify_cancel():
                    job.future.set_exception(NotReadyError("the server stopped"))

    def _pop_front(self, wait: bool) -> _EmbedJob | _CallJob | None:
        with self._cond:
            while wait and (not self._queue or self._held) and not self._stopping:
                self._cond.wait()
            if not self._queue or (self._held and not self._stopping):
                return None
            return self._queue.popleft()

    def _push_front(self, job: _EmbedJob | _CallJob) -> None:
        with self._cond:
            self._queue.appendleft(job)

    def _next_group(self) -> _CallJob | list[_EmbedJob] | None:
        """The next thing to run: a call, or embed jobs for one model within the token budget."""
        while True:
            first = self._pop_front(wait=True)
            if first is None:
                if self._stopping:
                    return None
                continue
            if not first.future.set_running_or_notify_cancel():
                self.dropped += 1
                continue
            if isinstance(first, _CallJob):
                return first
            self._tokenize(first)
            group, tokens = [first], sum(first.tokens)
            while True:
                nxt = self._pop_front(wait=False)
                if nxt is None:
                    break
                if isinstance(nxt, _CallJob) or nxt.model != first.model:
                    self._push_front(nxt)
                    break
                if nxt.future.cancelled():
                    self.dropped += 1
                    nxt.future.set_running_or_notify_cancel()
                    continue
                self._tokenize(nxt)
                if tokens + sum(nxt.tokens) > self.max_batch_tokens:
                    self._push_front(nxt)
                    break
                if not nxt.future.set_running_or_notify_cancel():
                    self.dropped += 1
                    continue
                group.append(nxt)
                tokens += sum(nxt.tokens)
            return group

    def _tokenize(self, job: _EmbedJob) -> None:
        """Token ids to text, token counts (bounded at max_length + 1), the no-truncation check."""
        if job.tokenized:
            return
        job.tokenized = True
        try:
            self._count(job)
        except Exception as exc:  # a tokenizer error fails this request, never the engine
            job.error = exc
            job.tokens = [0] * len(job.pairs)

    def _count(self, job: _EmbedJob) -> None:
        from llm2vec_rag.instructions import tokenize_all

        encoder = self.served.models[job.model]
        tok = encoder.tokenizer
        items = []
        for instruction, piece in job.pairs:
            text = piece if isinstance(piece, str) else tok.decode(list(piece), skip_special_tokens=True)
            items.append([instruction, text])
        limit = int(encoder.max_length)
        extra = {}
        if "template" in inspect.signature(tokenize_all).parameters:  # an encoder that wraps inputs in a chat turn
            extra["template"] = getattr(encoder, "chat_template", None)
        counted = tokenize_all(tok, items, limit + 1, append_eos=encoder.pooling_mode == "eos_token",
                               prepend_bos=encoder.pooling_mode == "bos_token",
                               include_special_tokens=encoder.include_special_tokens, **extra)
        lengths = [len(t.ids) for t in counted]
        if not job.truncate:
            for i, n in enumerate(lengths):
                if n > limit:
                    job.error = InputTooLongError(i, n, limit)
                    break
        job.items = items
        job.tokens = [min(n, limit) for n in lengths]

    def _run_embed(self, group: list[_EmbedJob]) -> None:
        runnable = []
        for job in group:
            if job.error is not None:
                job.future.set_exception(job.error)
            else:
                runnable.append(job)
        if not runnable:
            return
        encoder = self.served.models[runnable[0].model]
        items = [item for job in runnable for item in job.items]
        start = time.perf_counter()
        try:
            vectors = encoder.encode(items, show_progress_bar=False, convert_to_numpy=True)
        except BaseException as exc:  # a bug or resource error: every request in the call gets it
            for job in runnable:
                job.future.set_exception(exc)
            if not isinstance(exc, Exception):
                raise
            return
        inference = time.perf_counter() - start
        vectors = np.asarray(vectors, dtype=np.float32).reshape(len(items), -1)
        offset = 0
        waits = []
        for job in runnable:
            n = len(job.items)
            waits.append(start - job.enqueued)
            job.future.set_result(EmbedResult(vectors[offset:offset + n], job.tokens, start - job.enqueued,
                                              inference, len(runnable)))
            offset += n
        if self._on_batch is not None:
            self._on_batch(BatchStats(len(runnable), len(items), sum(sum(j.tokens) for j in runnable),
                                      inference, waits))

    def _run_call(self, job: _CallJob) -> None:
        try:
            result = job.fn(self.served)
        except BaseException as exc:
            job.future.set_exception(exc)
            if not isinstance(exc, Exception):
                raise
            return
        job.future.set_result(result)
