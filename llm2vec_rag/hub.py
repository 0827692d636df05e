"""Hugging Face Hub ids → local snapshots, quickly or with a clear error.

Why not leave it to transformers: offline, transformers retries the Hub for
tens of seconds before failing, and it never follows a published LLM2Vec
checkpoint's adapter (``adapter_config.json`` beside a ``config.json``). So a
Hub id is first looked up in the local Hugging Face cache; only when it is not
there, and the Hub is reachable (offline mode not set, a TCP connection to the
endpoint within :data:`CONNECT_TIMEOUT_S`), is it downloaded. Everything after
that reads local files, like any model directory.
"""
from __future__ import annotations

import os
import socket
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlparse

from .errors import ModelNotFoundError

CONNECT_TIMEOUT_S = 3.0
# what an encoder needs from a model or adapter repository (no duplicate .bin/.pth weights)
ALLOW_PATTERNS = ["*.json", "*.safetensors", "*.model", "*.txt", "*.jinja", "tokenizer*", "adapter_model.bin"]
TRUE = {"1", "on", "yes", "true"}


@dataclass(frozen=True)
class HubOptions:
    """The Hugging Face loading keywords the reference passes on (``revision`` applies to the model only)."""

    revision: str | None = None
    cache_dir: str | None = None
    token: str | bool | None = None
    local_files_only: bool = False


def offline_mode() -> bool:
    """``HF_HUB_OFFLINE`` / ``TRANSFORMERS_OFFLINE`` as set now (not when huggingface_hub was imported)."""
    return any(os.environ.get(v, "").strip().lower() in TRUE for v in ("HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE"))


def hub_reachable(timeout: float = CONNECT_TIMEOUT_S) -> bool:
    """A TCP connection to the Hub endpoint (``HF_ENDPOINT``) within ``timeout`` seconds."""
    url = urlparse(os.environ.get("HF_ENDPOINT") or "https://huggingface.co")
    port = url.port or (443 if url.scheme == "https" else 80)
    try:
        with socket.create_connection((url.hostname or "huggingface.co", port), timeout=timeout):
            return True
    except OSError:
        return False


def snapshot(repo_id: str, options: HubOptions = HubOptions(), what: str = "model", local_route: str = "") -> Path:
    """The local folder of ``repo_id``: from the cache, else downloaded; fails fast when it cannot be."""
    from huggingface_hub import snapshot_download

    common = dict(revision=options.revision, cache_dir=options.cache_dir, token=options.token,
                  allow_patterns=ALLOW_PATTERNS)
    try:
        return Path(snapshot_download(repo_id, local_files_only=True, **common))
    except Exception:  # not cached (LocalEntryNotFoundError and friends)
        pass
    if options.local_files_only or offline_mode():
        why = "local_files_only" if options.local_files_only else "offline mode (HF_HUB_OFFLINE) is set"
        raise ModelNotFoundError(f"cannot load {what} {repo_id!r} from the Hugging Face Hub: not in the local cache "
                                 f"and {why}; {local_route}")
    if not hub_reachable():
        raise ModelNotFoundError(f"cannot load {what} {repo_id!r} from the Hugging Face Hub: not in the local cache "
                                 f"and the Hub is unreachable (no network?); {local_route}")
    try:
        return Path(snapshot_download(repo_id, **common))
    except Exception as exc:  # 404, gated repo, bad token, ...
        reason = str(exc).strip().splitlines()[0][:200] if str(exc).strip() else type(exc).__name__
        raise ModelNotFoundError(f"cannot download {what} {repo_id!r} from the Hugging Face Hub ({reason}); "
                                 f"{local_route}") from None
