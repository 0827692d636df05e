"""The server's limits and switches, one typed record (the ``serve`` command's options fill it)."""
from __future__ import annotations

from dataclasses import asdict, dataclass


@dataclass(frozen=True)
class ServerSettings:
    api_key: str | None = None  # when set, every route but /health and /metrics needs "Authorization: Bearer KEY"
    max_batch_tokens: int = 16384  # tokens packed into one encode call from concurrent requests
    max_concurrent_requests: int = 512  # requests queued or running; beyond: 429 with Retry-After
    max_inputs: int = 2048  # inputs in one request (OpenAI's own cap); beyond: 413
    max_request_bytes: int = 16 * 1024 * 1024  # request body; beyond: 413
    max_search_k: int = 1000
    auto_truncate: bool = True  # cut over-long inputs at max_length unless a request sends truncate=false
    retry_after_s: int = 1  # the Retry-After header of a 429

    def public(self) -> dict:
        """The limits as /info shows them (never the key)."""
        out = asdict(self)
        out.pop("api_key")
        out["auth"] = self.api_key is not None
        return out
