"""Errors a route answers with, rendered in the envelope of the API family the client speaks.

* OpenAI (``/v1/...``): ``{"error": {"message", "type", "param", "code"}}``;
* TEI (``/embed``, ``/``): ``{"error": "...", "error_type": "Validation" | "Overloaded" | ...}``;
* Ollama (``/api/...``): ``{"error": "..."}``.

The status codes are the same in all three: 400 bad input, 401 no or wrong key,
404 unknown model or route, 405 wrong method, 413 too big, 429 queue full (with ``Retry-After``), 503 not ready.
"""
from __future__ import annotations

from dataclasses import dataclass, field

OPENAI_TYPES = {400: "invalid_request_error", 401: "invalid_request_error", 404: "invalid_request_error",
                405: "invalid_request_error", 413: "invalid_request_error", 429: "rate_limit_exceeded", 503: "server_error", 500: "server_error"}
TEI_TYPES = {400: "Validation", 401: "Unauthorized", 404: "Validation", 405: "Validation", 413: "Validation", 429: "Overloaded",
             503: "Unhealthy", 500: "Backend"}


@dataclass
class ApiError(Exception):
    status: int
    message: str
    param: str | None = None
    code: str | None = None
    headers: dict[str, str] = field(default_factory=dict)

    def __str__(self) -> str:
        return self.message


def family(path: str) -> str:
    """Which API a path belongs to: ``openai``, ``ollama`` or ``tei``."""
    if path.startswith("/api/"):
        return "ollama"
    if path.startswith("/v1/") or path == "/v1":
        return "openai"
    return "tei"


def error_body(path: str, err: ApiError) -> dict:
    kind = family(path)
    if kind == "openai":
        return {"error": {"message": err.message, "type": OPENAI_TYPES.get(err.status, "invalid_request_error"),
                          "param": err.param, "code": err.code}}
    if kind == "ollama":
        return {"error": err.message}
    return {"error": err.message, "error_type": TEI_TYPES.get(err.status, "Backend")}
