"""Encode a large corpus with one model per worker process (one per GPU, or several CPU workers).

Workers are spawned processes that build their encoder themselves with a picklable
``factory(device)`` the caller gives (``LLM2Vec`` passes one that reloads it from its load
spec, or from a directory it saves), so nothing model-sized crosses a process boundary and
this module knows no encoder class; texts go in, float32 arrays come back.
"""
from __future__ import annotations

import os
import queue
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from .errors import LLM2VecError


@dataclass
class EncodePool:
    processes: list[Any]
    inputs: Any
    outputs: Any
    devices: list[str]
    tmpdir: Any = field(default=None, repr=False)  # a TemporaryDirectory the workers load from, removed on stop


def _worker(factory: Callable[[str], Any], device: str, threads: int | None, inputs, outputs) -> None:
    import torch

    if threads:
        torch.set_num_threads(threads)
    try:
        encoder = factory(device)
    except Exception as exc:  # reported to the parent, which raises it
        outputs.put((-1, f"{type(exc).__name__}: {exc}"))
        return
    outputs.put((-2, "ready"))
    while True:
        job = inputs.get()
        if job is None:
            return
        chunk_id, texts, options = job
        try:
            outputs.put((chunk_id, encoder.encode(texts, **options)))
        except Exception as exc:
            outputs.put((-1, f"{type(exc).__name__}: {exc}"))


def start_pool(factory: Callable[[str], Any], devices: Sequence[str] | None = None,
               threads_per_worker: int | None = None, tmpdir: Any = None) -> EncodePool:
    """Start one worker per entry of ``devices`` (default: every CUDA device, else two CPU workers).

    ``factory(device)`` builds the worker's encoder (anything with ``encode``); it is pickled into
    each spawned process, so it must be a module-level function or a ``functools.partial`` of one.
    ``tmpdir`` (a ``TemporaryDirectory``) is removed by :func:`stop_pool`.
    """
    import multiprocessing as mp

    import torch

    if not devices:
        count = torch.cuda.device_count()
        devices = [f"cuda:{i}" for i in range(count)] if count else ["cpu", "cpu"]
    if threads_per_worker is None and all(d == "cpu" for d in devices):
        threads_per_worker = max(1, (os.cpu_count() or 1) // len(devices))
    ctx = mp.get_context("spawn")
    inputs, outputs = ctx.Queue(), ctx.Queue()
    processes = [
        ctx.Process(target=_worker, args=(factory, d, threads_per_worker, inputs, outputs), daemon=True)
        for d in devices
    ]
    for p in processes:
        p.start()
    pool = EncodePool(processes, inputs, outputs, list(devices), tmpdir)
    for _ in processes:  # wait until every worker has loaded, so errors surface here
        tag, payload = _get(pool)
        if tag == -1:
            stop_pool(pool)
            raise LLM2VecError(f"encoding worker failed to start: {payload}")
    return pool


def _get(pool: EncodePool, timeout: float = 600.0):
    while True:
        try:
            return pool.outputs.get(timeout=timeout)
        except queue.Empty:
            if not any(p.is_alive() for p in pool.processes):
                raise LLM2VecError("all encoding workers died") from None


def encode_with_pool(pool: EncodePool, texts: Sequence[Any], chunk_size: int = 1000, **options: Any) -> np.ndarray:
    """Split ``texts`` into chunks, encode them across workers, return vectors in input order."""
    options = {**options, "show_progress_bar": False, "convert_to_numpy": True, "convert_to_tensor": False}
    chunks = [list(texts[i : i + chunk_size]) for i in range(0, len(texts), chunk_size)]
    for i, chunk in enumerate(chunks):
        pool.inputs.put((i, chunk, options))
    results: dict[int, np.ndarray] = {}
    while len(results) < len(chunks):
        tag, payload = _get(pool)
        if tag == -1:
            raise LLM2VecError(f"encoding worker failed: {payload}")
        if tag >= 0:
            results[tag] = payload
    if not chunks:
        return np.zeros((0, 0), dtype=np.float32)
    return np.concatenate([results[i] for i in range(len(chunks))], axis=0)


def stop_pool(pool: EncodePool) -> None:
    for _ in pool.processes:
        pool.inputs.put(None)
    for p in pool.processes:
        p.join(timeout=30)
        if p.is_alive():
            p.terminate()
    if pool.tmpdir is not None:
        pool.tmpdir.cleanup()
