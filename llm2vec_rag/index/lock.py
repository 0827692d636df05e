"""One writer per index: an exclusive, non-blocking ``fcntl.flock`` on ``<index>/write.lock``.

The kernel drops the lock when the process dies (even by SIGKILL), so a crash
never leaves a stale lock behind. Readers (search) never take it.
"""
from __future__ import annotations

import errno
import fcntl
import os
from pathlib import Path

from ..errors import IndexLockedError, IndexReadOnlyError

LOCK_FILE = "write.lock"


class WriteLock:
    def __init__(self, folder: Path) -> None:
        self.path = Path(folder) / LOCK_FILE
        self._fd: int | None = None

    @property
    def held(self) -> bool:
        return self._fd is not None

    def acquire(self) -> None:
        if self._fd is not None:
            return
        try:
            fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
        except OSError as exc:
            if exc.errno in (errno.EROFS, errno.EACCES, errno.EPERM):
                raise IndexReadOnlyError(f"the index at {self.path.parent} is read-only ({exc.strerror}): "
                                         "it can be searched, not changed") from None
            raise
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            try:
                holder = os.read(fd, 64).decode("ascii", errors="replace").strip()
            finally:
                os.close(fd)
            who = f" (pid {holder})" if holder.isdigit() else ""
            raise IndexLockedError(
                f"another llm2vec-rag process{who} is writing to the index at {self.path.parent}; "
                "wait for it to finish"
            ) from None
        os.ftruncate(fd, 0)
        os.write(fd, str(os.getpid()).encode())
        self._fd = fd

    def release(self) -> None:
        if self._fd is None:
            return
        try:
            fcntl.flock(self._fd, fcntl.LOCK_UN)
        finally:
            os.close(self._fd)
            self._fd = None
