"""Run the app with uvicorn on a socket bound up front (so "port in use" is a one-line error before any load)."""
from __future__ import annotations

import errno
import socket
from typing import Any

from llm2vec_rag.errors import LLM2VecError
from llm2vec_rag.integrations._shared import require


def bind_socket(host: str, port: int) -> socket.socket:
    """A listening TCP socket on ``host:port`` (port 0: any free one)."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((host, port))
    except OSError as exc:
        sock.close()
        if exc.errno == errno.EADDRINUSE:
            raise LLM2VecError(f"port {port} on {host} is already in use; choose another with --port") from None
        if exc.errno == errno.EACCES:
            raise LLM2VecError(f"no permission to listen on {host}:{port}; use a port above 1023") from None
        raise LLM2VecError(f"cannot listen on {host}:{port}: {exc.strerror or exc}") from None
    sock.listen(2048)
    sock.setblocking(False)
    return sock


def address(sock: socket.socket) -> str:
    host, port = sock.getsockname()[:2]
    return f"http://[{host}]:{port}" if ":" in host else f"http://{host}:{port}"


def make_server(app: Any, quiet: bool = False, access_log: bool = False, graceful_s: float = 30.0) -> Any:
    """A ``uvicorn.Server`` (run it with ``server.run(sockets=[sock])``); SIGTERM lets in-flight requests finish."""
    uvicorn = require("uvicorn", "server", "uvicorn")
    config = uvicorn.Config(app, log_level="error" if quiet else "warning", access_log=access_log and not quiet,
                            lifespan="on", timeout_graceful_shutdown=graceful_s, timeout_keep_alive=30)
    return uvicorn.Server(config)
