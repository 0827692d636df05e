"""Embed chunk texts on a Ray cluster: Ray Data ``map_batches`` over an actor pool, one model per actor.

Files are still read and chunked by the calling process (``sync_folder``); only
the embedding moves to Ray. Each actor loads the model the index records
(``index.info["model_args"]``, the same way ``Index.encoder`` does) on its own
device: one GPU per actor when the cluster has GPUs, else CPU actors with a
few torch threads each. Nothing model-sized crosses the wire: texts go out,
float32 vectors come back and are put back in input order by position.

Ray is imported only here and only when used; the package must be importable
(installed) on every node of a remote cluster.
"""
from __future__ import annotations

import importlib.util
import logging
import math
import re
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any

import numpy as np

from ..errors import IndexModelMismatchError, LLM2VecError
from .records import normalise

if TYPE_CHECKING:  # pragma: no cover
    from .index import Index

RAY_MISSING = "Ray is not installed: pip install 'llm2vec-rag[ray]'"
RAY_COMMIT_CHUNKS = 4096  # chunks per wave (one Ray Data execution, one actor start-up, one commit)
THREADS_PER_CPU_ACTOR = 4  # torch threads per CPU actor when the number of actors is not given
ROWS_PER_CALL = 256  # at most this many texts per actor call (fewer for small waves, to spread the work)


def ray_address(ray: str | bool | None) -> str | None:
    """The address to pass to ``ray.init``: None for a local runtime (``True``, ``"local"``, ``""``)."""
    if ray is True or ray is None:
        return None
    text = str(ray).strip()
    return None if text in {"", "local"} else text


def require_ray() -> None:
    """Raise the one-line install hint when Ray is missing (without importing it: that takes a while)."""
    try:
        found = importlib.util.find_spec("ray") is not None
    except (ImportError, ValueError):  # ValueError: sys.modules["ray"] is None (or has no spec)
        found = False
    if not found:
        raise LLM2VecError(RAY_MISSING)


def _import_ray() -> Any:
    try:
        import ray
        import ray.data  # noqa: F401
    except ImportError:
        raise LLM2VecError(RAY_MISSING) from None
    return ray


class EmbedActor:
    """One model per Ray actor; called with numpy batches ``{"i", "text"}``, returns ``{"i", "vector"}``."""

    def __init__(self, model: str, adapters: Sequence[str] = (), options: dict[str, Any] | None = None,
                 fingerprint: str | None = None, document_instruction: str | None = None,
                 threads: int | None = None, batch_size: int = 32) -> None:
        import torch

        if threads:
            torch.set_num_threads(int(threads))
        from .model import load_encoder

        self.encoder = load_encoder(model, list(adapters or ()), **(options or {}))
        if fingerprint and str(self.encoder.fingerprint()) != fingerprint:
            raise IndexModelMismatchError(
                f"the model loaded on the Ray worker ({model}) has fingerprint {self.encoder.fingerprint()}, "
                f"the index was built with {fingerprint}; is the same model available on every node?")
        if document_instruction is not None and hasattr(self.encoder, "document_instruction"):
            self.encoder.document_instruction = document_instruction
        self.batch_size = int(batch_size)

    def __call__(self, batch: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        texts = [str(t) for t in batch["text"]]
        vectors = self.encoder.encode_documents(texts, batch_size=self.batch_size, show_progress_bar=False,
                                                normalize_embeddings=True)
        vectors = np.asarray(vectors, dtype=np.float32).reshape(len(texts), -1)
        return {"i": np.asarray(batch["i"], dtype=np.int64), "vector": vectors}


class RayEmbedder:
    """``(texts) -> float32 (n, dim)`` L2-normalised vectors for ``index``, computed by Ray actors.

    ``address``: None/``True``/``"local"`` starts (or joins, via ``RAY_ADDRESS``) a local runtime;
    ``"auto"`` or ``"ray://host:10001"`` connects to a running cluster. A runtime already initialised
    in this process is reused. ``actors``: default one per GPU, else CPUs // 4 (at least 1).
    ``close()`` shuts down only a runtime this object started.
    """

    def __init__(self, index: Index, address: str | bool | None = None, actors: int | None = None,
                 batch_size: int = 32, log: Callable[[str], None] | None = None) -> None:
        ray = _import_ray()
        if actors is not None and int(actors) < 1:
            raise LLM2VecError(f"--ray-actors must be at least 1, got {actors}")
        self._ray = ray
        self.dim = index.dim
        self.address = ray_address(address)
        self.batch_size = int(batch_size)
        self._started = False
        if not ray.is_initialized():
            try:
                ray.init(address=self.address, ignore_reinit_error=True, log_to_driver=False,
                         include_dashboard=False, logging_level=logging.WARNING)
            except Exception as exc:  # ConnectionError, ValueError, ... from a bad or unreachable address
                where = self.address or "a local runtime"
                raise LLM2VecError(f"cannot start or reach Ray at {where}: {_first_line(exc)}") from None
            self._started = True
        try:
            self._configure(index, actors, log)
        except BaseException:
            self.close()
            raise

    def _configure(self, index: Index, actors: int | None, log: Callable[[str], None] | None) -> None:
        ray = self._ray
        resources = ray.cluster_resources()
        gpus = int(resources.get("GPU", 0))
        cpus = max(1, int(resources.get("CPU", 1)))
        node_cpus = max([int(n.get("Resources", {}).get("CPU", 0)) for n in ray.nodes() if n.get("Alive")] or [cpus])
        args = index.encoder_arguments
        model = str(args.pop("model"))
        adapters = list(args.pop("adapters", None) or ())
        options = {k: v for k, v in args.items() if v is not None}
        device = str(options.pop("device", "auto"))
        self.use_gpu = gpus > 0 and not device.startswith("cpu")
        if self.use_gpu:
            self.actors = int(actors or gpus)
            threads, num_cpus = None, 1  # Ray sets CUDA_VISIBLE_DEVICES: "cuda" is the actor's own GPU
            options["device"] = "cuda"
        else:
            if actors:
                self.actors = int(actors)
                threads = max(1, min(node_cpus, cpus // self.actors))
            else:
                threads = max(1, min(THREADS_PER_CPU_ACTOR, node_cpus))
                self.actors = max(1, cpus // threads)
            num_cpus = threads
            options["device"] = "cpu"
            if options.get("dtype", "auto") == "auto" and index.loaded_encoder is not None:
                # the dtype the in-process model uses, so CPU actors give the same vectors
                dtype = _model_dtype(index.loaded_encoder)
                if dtype:
                    options["dtype"] = dtype
        self.threads = threads
        self.num_cpus = num_cpus
        self._constructor = {
            "model": model, "adapters": adapters, "options": options,
            "fingerprint": index.info.get("fingerprint") or None,
            "document_instruction": index.info.get("document_instruction"),
            "threads": threads, "batch_size": self.batch_size,
        }
        if log is not None:
            kind = "GPU actors (1 GPU each)" if self.use_gpu else f"CPU actors ({threads} threads each)"
            log(f"note: embedding with Ray ({self.address or 'local'}): {self.actors} {kind}")

    def __call__(self, texts: Sequence[str]) -> np.ndarray:
        texts = [str(t) for t in texts]
        n = len(texts)
        if n == 0:
            return np.zeros((0, self.dim), dtype=np.float32)
        ray = self._ray
        per_call = max(1, min(ROWS_PER_CALL, math.ceil(n / (self.actors * 4))))
        context = ray.data.DataContext.get_current()
        saved = (context.enable_progress_bars, context.enable_auto_log_stats)
        context.enable_progress_bars = False
        context.enable_auto_log_stats = False
        loggers = {name: logging.getLogger(name) for name in ("ray.data", "ray.data._internal.progress")}
        saved_levels = {name: lg.level for name, lg in loggers.items()}
        loggers["ray.data"].setLevel(logging.WARNING)  # no "Starting execution of Dataset ..." notes
        loggers["ray.data._internal.progress"].setLevel(logging.ERROR)  # no "Progress bars disabled"
        try:
            ds = ray.data.from_items([{"i": i, "text": t} for i, t in enumerate(texts)],
                                     override_num_blocks=max(1, math.ceil(n / per_call)))
            ds = ds.map_batches(
                EmbedActor, fn_constructor_kwargs=self._constructor, batch_size=per_call, batch_format="numpy",
                compute=ray.data.ActorPoolStrategy(size=self.actors), num_gpus=1 if self.use_gpu else 0,
                num_cpus=self.num_cpus)
            out = np.full((n, 0), np.nan, dtype=np.float32)
            done = np.zeros(n, dtype=bool)
            for batch in ds.iter_batches(batch_size=None, batch_format="numpy"):
                idx = np.asarray(batch["i"], dtype=np.int64)
                vectors = np.asarray(batch["vector"], dtype=np.float32).reshape(len(idx), -1)
                if out.shape[1] == 0:
                    out = np.zeros((n, vectors.shape[1]), dtype=np.float32)
                out[idx] = vectors
                done[idx] = True
        except LLM2VecError:
            raise
        except Exception as exc:
            raise LLM2VecError(f"embedding with Ray failed: {_describe(exc)}") from None
        finally:
            context.enable_progress_bars, context.enable_auto_log_stats = saved
            for name, level in saved_levels.items():
                loggers[name].setLevel(level)
        if not done.all():
            raise LLM2VecError(f"embedding with Ray returned {int(done.sum())} of {n} vectors")
        if out.shape[1] != self.dim:
            raise IndexModelMismatchError(f"the encoder gives {out.shape[1]}-d vectors, the index holds {self.dim}-d")
        return normalise(out)

    def close(self) -> None:
        """Shut down the Ray runtime if this object started it (a joined or reused one is left alone)."""
        if self._started:
            self._started = False
            self._ray.shutdown()

    def __enter__(self) -> RayEmbedder:
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()


def _model_dtype(encoder: Any) -> str | None:
    try:
        return str(next(encoder.model.parameters()).dtype).removeprefix("torch.")
    except Exception:  # not a torch model (a test fake, a GGUF wrapper, ...)
        return None


_ERROR_LINE = re.compile(r"^(?:[A-Za-z_]\w*\.)*([A-Za-z_]\w*(?:Error|Exception|Interrupt)): (.+)$")
_ANSI = re.compile(r"\x1b\[[0-9;]*m")


def _describe(exc: BaseException) -> str:
    """One line for an error from Ray: the user's exception at the end of the remote traceback Ray
    puts in its message (ActorDiedError, RayTaskError, ...), else the first non-empty message."""
    chain, seen = [], set()
    while exc is not None and id(exc) not in seen:
        seen.add(id(exc))
        chain.append(exc)
        nxt = getattr(exc, "cause", None)
        exc = nxt if isinstance(nxt, BaseException) else (exc.__cause__ or exc.__context__)
    for item in chain:
        lines = [_ANSI.sub("", line).strip() for line in str(item).splitlines()]
        matches = [m for m in map(_ERROR_LINE.match, lines) if m]
        if matches:
            return f"{matches[-1].group(1)}: {matches[-1].group(2)}"
    for item in chain:
        if str(item).strip():
            return _first_line(item)
    return type(chain[0]).__name__ if chain else "unknown error"


def _first_line(exc: BaseException) -> str:
    lines = [_ANSI.sub("", line).strip() for line in str(exc).splitlines() if line.strip()]
    return f"{type(exc).__name__}: {lines[0]}" if lines else type(exc).__name__
