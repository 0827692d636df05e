"""Request bodies of the three embedding APIs, parsed into one :class:`EmbedSpec`; vectors shaped for replies.

Parsing is strict and names the offending field (``param``), the way the
OpenAI API reports it, so a client sees a one-line 400 instead of a 500.
"""
from __future__ import annotations

import base64
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np

from .errors import ApiError
from .settings import ServerSettings

INPUT_TYPES = ("query", "document")


@dataclass
class EmbedSpec:
    model: str | None  # None: the default model
    pieces: list  # str, or a list of token ids
    input_type: str = "document"
    instruction: str | None = None
    dimensions: int | None = None
    normalize: bool = True
    truncate: bool = True
    encoding_format: str = "float"
    single: bool = False  # the input was one item (legacy Ollama answers one vector)


def bad(message: str, param: str | None = None, status: int = 400, code: str | None = None) -> ApiError:
    return ApiError(status, message, param=param, code=code or ("invalid_value" if status == 400 else None))


def _is_int(x: Any) -> bool:
    return isinstance(x, int) and not isinstance(x, bool)


def parse_input(value: Any, param: str, settings: ServerSettings, allow_ids: bool = True) -> tuple[list, bool]:
    """A string, a list of strings, a list of token ids or a list of token-id lists → pieces, single?"""
    if isinstance(value, str):
        return [value], True
    if not isinstance(value, list):
        raise bad(f"'{param}' must be a string or a list of strings"
                  + (" or token ids" if allow_ids else "") + f", got {type(value).__name__}", param)
    if not value:
        raise bad(f"'{param}' must not be empty", param)
    if len(value) > settings.max_inputs:
        raise bad(f"too many inputs: {len(value)}, the limit is {settings.max_inputs} per request; "
                  f"split the request", param, status=413, code="too_many_inputs")
    if all(isinstance(v, str) for v in value):
        return list(value), False
    if allow_ids and all(_is_int(v) for v in value):
        return [list(value)], True
    if allow_ids and all(isinstance(v, list) for v in value):
        for i, ids in enumerate(value):
            if not ids:
                raise bad(f"'{param}[{i}]' is an empty list of token ids", param)
            if not all(_is_int(t) for t in ids):
                raise bad(f"'{param}[{i}]' must be a list of integer token ids", param)
        return [list(v) for v in value], False
    raise bad(f"'{param}' mixes types: give all strings" + (", all token ids or all token-id lists" if allow_ids
                                                             else ""), param)


def _opt_str(body: Mapping[str, Any], key: str) -> str | None:
    value = body.get(key)
    if value is None:
        return None
    if not isinstance(value, str):
        raise bad(f"'{key}' must be a string", key)
    return value


def _opt_bool(body: Mapping[str, Any], key: str, default: bool) -> bool:
    value = body.get(key)
    if value is None:
        return default
    if not isinstance(value, bool):
        raise bad(f"'{key}' must be true or false", key)
    return value


def _opt_dimensions(body: Mapping[str, Any]) -> int | None:
    value = body.get("dimensions")
    if value is None:
        return None
    if not _is_int(value) or value < 1:
        raise bad("'dimensions' must be a positive integer", "dimensions")
    return int(value)


def _extras(body: Mapping[str, Any], input_type_key: str = "input_type") -> tuple[str, str | None]:
    """LLM2Vec's own fields: ``input_type`` (query | document) and ``instruction`` (implies query)."""
    instruction = _opt_str(body, "instruction")
    input_type = _opt_str(body, input_type_key)
    if input_type is not None:
        input_type = input_type.lower()
        if input_type not in INPUT_TYPES:
            raise bad(f"'{input_type_key}' must be 'query' or 'document', got {input_type!r}", input_type_key)
    if instruction is not None and input_type == "document":
        raise bad("'instruction' applies to queries; documents are embedded without one "
                  "(drop 'instruction' or use input_type 'query')", "instruction")
    if input_type is None:
        input_type = "query" if instruction is not None else "document"
    return input_type, instruction


def parse_openai(body: Mapping[str, Any], settings: ServerSettings) -> EmbedSpec:
    if "input" not in body:
        raise bad("'input' is required", "input", code="missing_required_parameter")
    pieces, single = parse_input(body["input"], "input", settings)
    for i, piece in enumerate(pieces):  # OpenAI answers 400 to an empty string, alone or in a list
        if piece == "":
            raise bad("'input' must not be an empty string" if single else f"'input[{i}]' is an empty string; "
                      "the OpenAI API refuses empty inputs", "input")
    fmt = body.get("encoding_format") or "float"
    if fmt not in ("float", "base64"):
        raise bad(f"'encoding_format' must be 'float' or 'base64', got {fmt!r}", "encoding_format")
    if body.get("user") is not None and not isinstance(body.get("user"), str):
        raise bad("'user' must be a string", "user")
    input_type, instruction = _extras(body)
    return EmbedSpec(model=_opt_str(body, "model"), pieces=pieces, input_type=input_type, instruction=instruction,
                     dimensions=_opt_dimensions(body), normalize=_opt_bool(body, "normalize", True),
                     truncate=_opt_bool(body, "truncate", settings.auto_truncate), encoding_format=fmt,
                     single=single)


def parse_tei(body: Mapping[str, Any], settings: ServerSettings) -> EmbedSpec:
    """TEI's ``/embed``: ``inputs``, ``normalize``, ``truncate``, ``truncation_direction``, ``prompt_name``, ``dimensions``."""
    if "inputs" not in body:
        raise bad("'inputs' is required", "inputs")
    pieces, single = parse_input(body["inputs"], "inputs", settings)
    direction = body.get("truncation_direction") or "Right"
    if str(direction).lower() != "right":
        raise bad("only truncation_direction 'Right' is supported (LLM2Vec cuts the end of a text)",
                  "truncation_direction")
    prompt = _opt_str(body, "prompt_name")
    merged = dict(body)
    if prompt is not None and body.get("input_type") is None:
        merged["input_type"] = prompt
    input_type, instruction = _extras(merged)
    return EmbedSpec(model=_opt_str(body, "model"), pieces=pieces, input_type=input_type, instruction=instruction,
                     dimensions=_opt_dimensions(body), normalize=_opt_bool(body, "normalize", True),
                     truncate=_opt_bool(body, "truncate", settings.auto_truncate), single=single)


def parse_ollama(body: Mapping[str, Any], settings: ServerSettings, legacy: bool = False) -> EmbedSpec:
    """Ollama's ``/api/embed`` (``input``) and the older ``/api/embeddings`` (``prompt``)."""
    key = "prompt" if legacy else "input"
    if key not in body:
        raise bad(f"'{key}' is required", key)
    if legacy:
        if not isinstance(body[key], str):
            raise bad("'prompt' must be a string", key)
        pieces, single = [body[key]], True
    else:
        pieces, single = parse_input(body[key], key, settings, allow_ids=False)
    input_type, instruction = _extras(body)
    return EmbedSpec(model=_opt_str(body, "model"), pieces=pieces, input_type=input_type, instruction=instruction,
                     dimensions=_opt_dimensions(body), normalize=not legacy,
                     truncate=_opt_bool(body, "truncate", settings.auto_truncate), single=single)


def shape_vectors(vectors: np.ndarray, spec: EmbedSpec, dim: int) -> np.ndarray:
    """``dimensions``: keep the first ones, then L2-normalise; else normalise when asked (the default)."""
    out = np.asarray(vectors, dtype=np.float32)
    if spec.dimensions is not None:
        out = out[:, : spec.dimensions]
    if spec.normalize or spec.dimensions is not None:
        norms = np.linalg.norm(out, axis=1, keepdims=True)
        out = out / np.maximum(norms, 1e-12)
    return np.ascontiguousarray(out, dtype=np.float32)


def check_dimensions(spec: EmbedSpec, dim: int) -> None:
    if spec.dimensions is not None and spec.dimensions > dim:
        raise bad(f"'dimensions' is {spec.dimensions}, larger than the model's {dim}", "dimensions")


def b64_vector(vector: np.ndarray) -> str:
    """Little-endian float32 bytes, base64: what the ``openai`` client decodes by default."""
    return base64.b64encode(np.asarray(vector, dtype="<f4").tobytes()).decode("ascii")


def openai_body(vectors: np.ndarray, spec: EmbedSpec, model: str, tokens: int) -> dict:
    if spec.encoding_format == "base64":
        data = [{"object": "embedding", "index": i, "embedding": b64_vector(v)} for i, v in enumerate(vectors)]
    else:
        data = [{"object": "embedding", "index": i, "embedding": v} for i, v in enumerate(vectors)]
    return {"object": "list", "data": data, "model": model,
            "usage": {"prompt_tokens": int(tokens), "total_tokens": int(tokens)}}
