"""Prove an async call does not block the event loop: count ticks of a coroutine running beside it."""
from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import Any


async def count_ticks_while(work: Callable[[], Awaitable[Any]], interval: float = 0.01) -> tuple[Any, int]:
    """Run ``work()`` while a ticker on the same loop counts; returns (work's result, ticks)."""
    ticks = 0
    done = asyncio.Event()

    async def ticker() -> None:
        nonlocal ticks
        while not done.is_set():
            ticks += 1
            await asyncio.sleep(interval)

    task = asyncio.create_task(ticker())
    try:
        result = await work()
    finally:
        done.set()
        await task
    return result, ticks
