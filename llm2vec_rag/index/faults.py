"""Named crash points for the kill-9 tests.

``LLM2VEC_RAG_TEST_KILL_AT=<stage>[:<n>]`` makes the process SIGKILL itself the
n-th time (default first) it reaches ``stage``. Unset (always, outside tests),
each check is one dictionary lookup. Stages, in commit order: ``embedded``,
``committed``, ``removed``, ``faiss-tmp``, ``faiss-renamed``, ``generation``.
"""
from __future__ import annotations

import os
import signal
from collections import Counter

ENV = "LLM2VEC_RAG_TEST_KILL_AT"
_reached: Counter = Counter()


def crash_point(stage: str) -> None:
    spec = os.environ.get(ENV)
    if not spec:
        return
    name, _, nth = spec.partition(":")
    if name != stage:
        return
    _reached[stage] += 1
    if _reached[stage] >= int(nth or 1):
        os.kill(os.getpid(), signal.SIGKILL)
