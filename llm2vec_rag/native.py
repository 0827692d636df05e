"""A lean inference engine for the Llama family (Llama, Mistral, Qwen2, Qwen3).

Why a second forward pass next to transformers': start-up and speed. Building
a transformers model imports ~3 s of modules (dynamo, distributed tensors,
generation) before a single weight is read; this module needs only torch and
safetensors, so the default model loads in well under a second after torch.
It also fuses what transformers runs as separate kernels (RMSNorm in one
``F.rms_norm``; rotary embedding as one ``addcmul``, so bf16 rounds once where
transformers rounds twice) and passes a key-padding mask of shape (B, 1, 1, L)
instead of a full (B, 1, L, L) one, or none when a batch has no padding. On CPU,
bidirectional inference skips SDPA: long batches use span attention (each text over
its own tokens only, in cache-sized matmul blocks, ``_span_attention``), short ones
two batched matmuls (``_dense_attention``); the projections run on weights prepacked
once for oneDNN (see ``Linear``).

Parameter names match transformers' base model (``layers.0.self_attn.q_proj.weight``),
so checkpoints load as they are, fingerprints are identical across engines,
and the bidirectional switch (:mod:`.bidirectional`) works unchanged through
each attention module's ``is_causal``. Anything outside the table (other
families, rope scaling, sliding windows, unmerged adapters, training) goes
through transformers: ``engine="auto"`` picks this one only where it is exact,
and tests hold it to transformers' output per family.
"""
from __future__ import annotations

import ctypes
import functools
import json
import os
import sys
import weakref
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from .errors import ModelLoadError
from .families import NativeFamily, native_families


NATIVE_FAMILIES: dict[str, NativeFamily] = native_families()  # from the one per-family table
ACTIVATIONS = {"silu": F.silu, "swish": F.silu, "gelu": F.gelu}


class NativeConfig:
    """The config.json fields as attributes (what the rest of the toolkit reads from ``model.config``)."""

    def __init__(self, values: dict[str, Any]) -> None:
        self.__dict__.update(values)

    def to_dict(self) -> dict[str, Any]:
        return dict(self.__dict__)

    def __getattr__(self, name: str) -> Any:  # absent optional fields read as None, as in transformers
        if name.startswith("__"):
            raise AttributeError(name)
        return None


class NativeOutput:
    """What transformers' base model returns, as far as encoders read it: ``last_hidden_state``, and
    ``hidden_states`` when asked (embeddings, each layer's output, the last one after the final norm)."""

    __slots__ = ("last_hidden_state", "hidden_states")

    def __init__(self, last_hidden_state: torch.Tensor, hidden_states: tuple[torch.Tensor, ...] | None = None) -> None:
        self.last_hidden_state = last_hidden_state
        self.hidden_states = hidden_states

    def __getitem__(self, key: str | int) -> Any:
        if isinstance(key, int):
            return self.to_tuple()[key]
        if key not in self.__slots__ or getattr(self, key) is None:
            raise KeyError(key)
        return getattr(self, key)

    def keys(self) -> list[str]:
        return [k for k in self.__slots__ if getattr(self, k) is not None]

    def to_tuple(self) -> tuple[Any, ...]:
        return tuple(getattr(self, k) for k in self.keys())


def _rope_theta(cfg: dict[str, Any]) -> float | None:
    """The base frequency, or None when the rope type needs scaling we do not implement."""
    params = cfg.get("rope_parameters") or cfg.get("rope_scaling") or {}
    rope_type = params.get("rope_type", params.get("type", "default"))
    if rope_type != "default":
        return None
    theta = params.get("rope_theta", cfg.get("rope_theta", 10000.0))
    return float(theta)


def unsupported_reason(cfg: dict[str, Any]) -> str | None:
    """Why this config must go through transformers, or None when the native engine is exact for it."""
    mtype = cfg.get("model_type")
    if mtype not in NATIVE_FAMILIES:
        return f"model_type {mtype!r} is not in the native table"
    if _rope_theta(cfg) is None:
        return "rope scaling"
    if cfg.get("hidden_act", "silu") not in ACTIVATIONS:
        return f"activation {cfg.get('hidden_act')!r}"
    if cfg.get("sliding_window") and (cfg.get("use_sliding_window", mtype == "mistral")
                                      or "sliding_attention" in (cfg.get("layer_types") or [])):
        return "sliding-window attention"
    if cfg.get("partial_rotary_factor", 1.0) not in (1, 1.0, None):
        return "partial rotary embeddings"
    return None


# Prepacked weights cost a second copy of every projection; above this many bytes of them, skip.
PREPACK_MAX_BYTES = 1 << 30
_PACKED: "weakref.WeakKeyDictionary[Linear, tuple[tuple[int, int, torch.dtype], torch.Tensor]]" = (
    weakref.WeakKeyDictionary())


@functools.cache
def _fix_mmap_threshold() -> bool:
    """Pin glibc's mmap threshold at its 32 MB ceiling, once per process.

    Why: with prepacked weights glibc kept serving activation-sized blocks (1-30 MB) by mmap,
    so every batch page-faulted fresh memory: the elementwise ops after each projection ran
    2-20x slower and a 512-token forward lost 25% (measured on SmolLM2 bf16). A fixed
    threshold keeps those blocks in the heap for reuse; it is the value glibc's own dynamic
    threshold grows to. Set ``LLM2VEC_RAG_MALLOC_TUNING=0`` to leave the allocator alone.
    """
    if os.environ.get("LLM2VEC_RAG_MALLOC_TUNING", "1") == "0" or not sys.platform.startswith("linux"):
        return False
    try:
        libc = ctypes.CDLL("libc.so.6")
        return bool(libc.mallopt(-3, 32 << 20))  # M_MMAP_THRESHOLD
    except (OSError, AttributeError):  # not glibc (musl, ...): nothing to tune
        return False


@functools.cache
def _prepack_dtypes() -> frozenset[torch.dtype]:
    """The dtypes oneDNN runs prepacked on this CPU (bf16 needs AVX512-BF16/AMX)."""
    if not torch.backends.mkldnn.is_available():
        return frozenset()
    bf16 = {torch.bfloat16} if torch.ops.mkldnn._is_mkldnn_bf16_supported() else set()
    return frozenset({torch.float32, *bf16})


class Linear(nn.Linear):
    """No random init: every weight comes from the checkpoint (initialising 135M weights costs ~1 s).

    On CPU inference (no grad, not compiling) the weight is also kept in oneDNN's blocked layout,
    packed once: ``F.linear`` re-lays the weight out on every call. Measured per projection on
    SmolLM2 shapes: bf16 4-17% faster at 512 tokens (1.7x at 40), fp32 2.1-2.8x. bf16 outputs
    are bit-identical, fp32 within rounding (tested). The copy is keyed on the weight's storage
    and version, so an in-place update or a new tensor repacks it.
    """

    prepack = False  # set by NativeDecoder.use_prepacked_weights

    def reset_parameters(self) -> None:
        pass

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if (not torch.compiler.is_compiling() and self.prepack and not torch.is_grad_enabled()
                and x.device.type == "cpu" and x.dtype == self.weight.dtype and x.dtype in _prepack_dtypes()):
            return torch.ops.mkldnn._linear_pointwise(x, self._packed_weight(), self.bias, "none", [], "")
        return F.linear(x, self.weight, self.bias)

    def _packed_weight(self) -> torch.Tensor:
        w = self.weight
        key = (w.data_ptr(), w._version, w.dtype)
        cached = _PACKED.get(self)
        if cached is None or cached[0] != key:
            cached = (key, torch.ops.mkldnn._reorder_linear_weight(w.detach(), 512))
            _PACKED[self] = cached
        return cached[1]


class Embedding(nn.Embedding):
    def reset_parameters(self) -> None:
        pass


class RMSNorm(nn.Module):
    def __init__(self, dim: int, eps: float) -> None:
        super().__init__()
        self.weight = nn.Parameter(torch.empty(dim))
        self.eps = eps

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """fp32 statistics, then the weight's dtype (transformers' order of casts) in one fused kernel."""
        return F.rms_norm(x.float(), (x.shape[-1],), eps=self.eps).to(self.weight.dtype) * self.weight


class Attention(nn.Module):
    def __init__(self, cfg: NativeConfig, family: NativeFamily) -> None:
        super().__init__()
        self.heads = cfg.num_attention_heads
        self.kv_heads = cfg.num_key_value_heads or self.heads
        self.head_dim = cfg.head_dim or cfg.hidden_size // self.heads
        configured = bool(cfg.attention_bias)
        bias = configured if family.qkv_bias is None else family.qkv_bias
        self.q_proj = Linear(cfg.hidden_size, self.heads * self.head_dim, bias=bias)
        self.k_proj = Linear(cfg.hidden_size, self.kv_heads * self.head_dim, bias=bias)
        self.v_proj = Linear(cfg.hidden_size, self.kv_heads * self.head_dim, bias=bias)
        o_bias = configured if family.o_bias is None else family.o_bias
        self.o_proj = Linear(self.heads * self.head_dim, cfg.hidden_size, bias=o_bias)
        if family.qk_norm:
            self.q_norm = RMSNorm(self.head_dim, cfg.rms_norm_eps)
            self.k_norm = RMSNorm(self.head_dim, cfg.rms_norm_eps)
        else:
            self.q_norm = self.k_norm = None
        self.is_causal = True  # flipped by bidirectional.set_bidirectional

    def forward(
        self,
        h: torch.Tensor,
        cos: torch.Tensor,
        sin: torch.Tensor,
        mask: torch.Tensor | None,
        spans: list[tuple[int, int]] | None = None,
        dense: bool = False,
    ) -> torch.Tensor:
        b, n, _ = h.shape
        q = self.q_proj(h).view(b, n, self.heads, self.head_dim)
        k = self.k_proj(h).view(b, n, self.kv_heads, self.head_dim)
        v = self.v_proj(h).view(b, n, self.kv_heads, self.head_dim).transpose(1, 2)
        if self.q_norm is not None:
            q, k = self.q_norm(q), self.k_norm(k)
        q = _rotate(q.transpose(1, 2), cos, sin)
        k = _rotate(k.transpose(1, 2), cos, sin)
        if not self.is_causal:  # spans / dense: CPU inference only (NativeDecoder.cpu_attention)
            if spans is not None:
                return self.o_proj(_span_attention(q, k, v, spans, self.head_dim ** -0.5).reshape(b, n, -1))
            if dense:
                out = _dense_attention(q, k, v, mask, self.head_dim ** -0.5)
                return self.o_proj(out.transpose(1, 2).reshape(b, n, self.heads * self.head_dim))
        out = F.scaled_dot_product_attention(
            q, k, v, attn_mask=mask, scale=self.head_dim ** -0.5, enable_gqa=self.kv_heads != self.heads
        )
        return self.o_proj(out.transpose(1, 2).reshape(b, n, self.heads * self.head_dim))


# Queries per score block in span attention: a (kv_heads, group x 256, L) block of scores stays in cache.
SPAN_QUERY_CHUNK = 256
# From this padded length on, span attention beats one dense batched call; below it, dense wins
# (SmolLM2 shapes, bf16, 2 threads, per layer: 15 x 35 tokens dense 225 us, span 892, SDPA 733;
# 4 x 128: 448, 602, 1,107; 2 x 256: 828, 749, 1,805; 1 x 512: 8,811, 1,223, 3,688).
SPAN_MIN_LENGTH = 192


def _dense_attention(
    q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, mask: torch.Tensor | None, scale: float
) -> torch.Tensor:
    """Bidirectional attention on CPU for short batches (queries): two batched matmuls.

    Why: on short sequences torch's CPU flash-attention kernel spends its time in per-block
    overhead (0.7 ms a layer for 15 queries of 35 tokens, 13% of a query batch); one score
    matmul over the padded batch, a fp32 softmax and one value matmul take a third of that.
    ``mask`` is the key-padding mask (B, 1, 1, L) or None. GQA without repeating K/V. Returns
    (B, heads, L, head_dim); rows of padded queries are finite and unused.
    """
    bsz, heads, n, dim = q.shape
    kv_heads = k.shape[1]
    group = heads // kv_heads
    scores = torch.matmul(q.reshape(bsz, kv_heads, group * n, dim), k.transpose(-1, -2)).float() * scale
    scores = scores.view(bsz, kv_heads, group, n, n)
    if mask is not None:  # finite fill: a row with no real key (an empty text) stays finite
        scores = scores.masked_fill(~mask[:, :, None], torch.finfo(torch.float32).min)
    probs = torch.softmax(scores, dim=-1).to(v.dtype).view(bsz, kv_heads, group * n, n)
    return torch.matmul(probs, v).view(bsz, heads, n, dim)


def _span_attention(
    q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, spans: list[tuple[int, int]], scale: float
) -> torch.Tensor:
    """Bidirectional attention on CPU, one text at a time over its own tokens only.

    Why: torch's CPU flash-attention kernel reaches ~175 GFLOP/s in bf16 here, while plain
    matmuls on cache-sized blocks reach ~750, and padding costs nothing when each text is
    cut to its span (2.2-2.6x faster on SmolLM2 shapes; a SciFact encode +22%). Scores
    round to the input dtype: in bf16 that keeps document vectors at cosine 0.99993 to fp32
    (SDPA: 0.99994; benchmarks/encode_variants.py). Returns (B, L, heads, head_dim);
    padded positions are zeros (nothing pools them, and no real token attends to them).
    """
    bsz, heads, n, dim = q.shape
    kv_heads = k.shape[1]
    group = heads // kv_heads
    out = q.new_zeros(bsz, n, heads, dim)
    for i, (start, end) in enumerate(spans):
        keys_t = k[i, :, start:end].transpose(-1, -2)  # (kv, dim, len); GQA without repeating k/v
        values = v[i, :, start:end]
        for c in range(start, end, SPAN_QUERY_CHUNK):
            stop = min(c + SPAN_QUERY_CHUNK, end)
            block = q[i, :, c:stop].reshape(kv_heads, group * (stop - c), dim)  # heads sharing a kv head
            probs = torch.softmax(torch.matmul(block, keys_t) * scale, dim=-1)
            out[i, c:stop] = torch.matmul(probs, values).view(heads, stop - c, dim).transpose(0, 1)
    return out


def _spans(keep: torch.Tensor) -> list[tuple[int, int]] | None:
    """Each row's run of real tokens as (start, end), or None when some row's tokens are not one run."""
    n = keep.shape[-1]
    count = keep.sum(-1)
    start = torch.where(count > 0, keep.int().argmax(-1), 0)
    idx = torch.arange(n, device=keep.device)
    run = (idx >= start[:, None]) & (idx < (start + count)[:, None])
    if not bool((run == keep).all()):
        return None
    return list(zip(start.tolist(), (start + count).tolist()))


def _rotate(x: torch.Tensor, cos: torch.Tensor, signed_sin: torch.Tensor) -> torch.Tensor:
    """Rotary embedding: ``x*cos + rotate_half(x)*sin`` with the sign folded into ``signed_sin`` (3 kernels, not 5)."""
    return torch.addcmul(x * cos, x.roll(x.shape[-1] // 2, dims=-1), signed_sin)


class MLP(nn.Module):
    def __init__(self, cfg: NativeConfig) -> None:
        super().__init__()
        bias = bool(cfg.mlp_bias)
        self.gate_proj = Linear(cfg.hidden_size, cfg.intermediate_size, bias=bias)
        self.up_proj = Linear(cfg.hidden_size, cfg.intermediate_size, bias=bias)
        self.down_proj = Linear(cfg.intermediate_size, cfg.hidden_size, bias=bias)
        self.act = ACTIVATIONS[cfg.hidden_act or "silu"]

    def forward(self, h: torch.Tensor) -> torch.Tensor:
        return self.down_proj(self.act(self.gate_proj(h)) * self.up_proj(h))


class Layer(nn.Module):
    def __init__(self, cfg: NativeConfig, family: NativeFamily) -> None:
        super().__init__()
        self.input_layernorm = RMSNorm(cfg.hidden_size, cfg.rms_norm_eps)
        self.self_attn = Attention(cfg, family)
        self.post_attention_layernorm = RMSNorm(cfg.hidden_size, cfg.rms_norm_eps)
        self.mlp = MLP(cfg)


class NativeDecoder(nn.Module):
    """The decoder stack without its LM head; ``forward`` returns ``.last_hidden_state`` like transformers."""

    def __init__(self, cfg: NativeConfig) -> None:
        super().__init__()
        reason = unsupported_reason(cfg.to_dict())
        if reason:
            raise ModelLoadError(f"native engine cannot run this model: {reason}")
        family = NATIVE_FAMILIES[cfg.model_type]
        self.config = cfg
        self.embed_tokens = Embedding(cfg.vocab_size, cfg.hidden_size)
        self.layers = nn.ModuleList(Layer(cfg, family) for _ in range(cfg.num_hidden_layers))
        self.norm = RMSNorm(cfg.hidden_size, cfg.rms_norm_eps)
        head_dim = cfg.head_dim or cfg.hidden_size // cfg.num_attention_heads
        theta = _rope_theta(cfg.to_dict())
        inv_freq = 1.0 / (theta ** (torch.arange(0, head_dim, 2, dtype=torch.int64).float() / head_dim))
        self.register_buffer("inv_freq", inv_freq, persistent=False)

    # Bidirectional CPU inference uses span or dense attention (``cpu_attention``); False forces SDPA.
    use_cpu_attention = True

    @property
    def use_prepacked_weights(self) -> bool:
        """CPU inference through prepacked projection weights (see ``Linear``); on by default when supported."""
        return any(m.prepack for m in self.modules() if isinstance(m, Linear))

    @use_prepacked_weights.setter
    def use_prepacked_weights(self, on: bool) -> None:
        for m in self.modules():
            if isinstance(m, Linear):
                m.prepack = bool(on)
                if not on:
                    _PACKED.pop(m, None)

    def prepack_by_default(self) -> None:
        """On unless the second copy would pass ``PREPACK_MAX_BYTES`` (a 7B model would double its memory)."""
        size = sum(m.weight.numel() * m.weight.element_size() for m in self.modules() if isinstance(m, Linear))
        self.use_prepacked_weights = size <= PREPACK_MAX_BYTES
        if self.use_prepacked_weights:
            _fix_mmap_threshold()

    def cpu_attention(self, input_ids: torch.Tensor) -> str | None:
        """"span" (long batches) or "dense" (short ones) for CPU inference; None keeps SDPA."""
        # not under torch.compile: the per-text loop over Python ints would recompile for every batch
        # (checked first, so that dynamo puts no guard on the length)
        if (torch.compiler.is_compiling() or not self.use_cpu_attention or input_ids.device.type != "cpu"
                or torch.is_grad_enabled()):
            return None
        return "span" if input_ids.shape[-1] >= SPAN_MIN_LENGTH else "dense"

    def get_input_embeddings(self) -> nn.Embedding:
        return self.embed_tokens

    def forward(
        self,
        input_ids: torch.Tensor,
        attention_mask: torch.Tensor | None = None,
        position_ids: torch.Tensor | None = None,
        output_hidden_states: bool | None = None,
        **_: Any,
    ) -> NativeOutput:
        """transformers' keywords; others (``return_dict``, ``use_cache``, ``token_type_ids``) are ignored.

        Without ``position_ids``, positions count from each row's first real token (left padding
        shifts nothing); transformers counts from 0 including pads: the same vectors, RoPE being relative.
        """
        b, n = input_ids.shape
        dtype = self.embed_tokens.weight.dtype
        if attention_mask is None:
            attention_mask = torch.ones_like(input_ids)
        if position_ids is None:
            position_ids = (attention_mask.long().cumsum(-1) - 1).clamp(min=0)
        freqs = position_ids[:, :, None].float() * self.inv_freq.float()[None, None, :]
        angles = torch.cat((freqs, freqs), dim=-1)
        half = freqs.shape[-1]
        cos = angles.cos().to(dtype)[:, None]
        sin = angles.sin()
        sin = torch.cat((-sin[..., :half], sin[..., half:]), dim=-1).to(dtype)[:, None]
        masks: dict[bool, torch.Tensor | None] = {}
        kind = self.cpu_attention(input_ids)
        spans = _spans(attention_mask.bool()) if kind == "span" else None  # None: a mask with holes -> SDPA
        dense = kind == "dense"
        x = self.embed_tokens(input_ids)
        states: list[torch.Tensor] | None = [] if output_hidden_states else None
        for layer in self.layers:
            if states is not None:
                states.append(x)
            attn = layer.self_attn
            if attn.is_causal not in masks:
                masks[attn.is_causal] = _mask(attention_mask.bool(), attn.is_causal)
            x = x + attn(layer.input_layernorm(x), cos, sin, masks[attn.is_causal], spans, dense)
            x = x + layer.mlp(layer.post_attention_layernorm(x))
        last = self.norm(x)
        return NativeOutput(last, None if states is None else (*states, last))

    # ------------------------------------------------------------------ saving
    def save_pretrained(self, out: str | os.PathLike[str], safe_serialization: bool = True, **_: Any) -> None:
        """The transformers layout (config.json + model.safetensors), so either engine reloads it."""
        from safetensors.torch import save_file

        out = Path(out)
        out.mkdir(parents=True, exist_ok=True)
        state = {k: v.detach().contiguous().cpu() for k, v in self.state_dict().items()}
        save_file(state, str(out / "model.safetensors"), metadata={"format": "pt"})
        config = self.config.to_dict()
        config["dtype"] = str(self.embed_tokens.weight.dtype).removeprefix("torch.")
        (out / "config.json").write_text(json.dumps(config, indent=2, sort_keys=True) + "\n", encoding="utf-8")


def _mask(keep: torch.Tensor, causal: bool) -> torch.Tensor | None:
    """Key padding as (B, 1, 1, L), or (B, 1, L, L) when causal; None when nothing is masked."""
    if not causal:
        return None if bool(keep.all()) else keep[:, None, None, :]
    n = keep.shape[-1]
    tril = torch.ones((n, n), dtype=torch.bool, device=keep.device).tril()
    # each position also sees itself, so a left-pad row is never fully masked (SDPA would return NaN)
    return (keep[:, None, None, :] & tril) | torch.eye(n, dtype=torch.bool, device=keep.device)


def read_config(source: str | os.PathLike[str]) -> dict[str, Any] | None:
    path = Path(source) / "config.json"
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None


def weight_files(source: str | os.PathLike[str]) -> list[Path]:
    """The safetensors files of a local checkpoint (one file or an index of shards); [] if none."""
    src = Path(source)
    single = src / "model.safetensors"
    if single.is_file():
        return [single]
    index = src / "model.safetensors.index.json"
    if index.is_file():
        try:
            shards = sorted(set(json.loads(index.read_text(encoding="utf-8"))["weight_map"].values()))
        except (OSError, ValueError, KeyError):
            return []
        return [src / s for s in shards]
    return []


def native_reason(source: str | os.PathLike[str]) -> str | None:
    """None when ``source`` is a local checkpoint the native engine runs exactly; else why not."""
    cfg = read_config(source)
    if cfg is None:
        return "no readable config.json"
    if not weight_files(source):
        return "no safetensors weights"
    return unsupported_reason(cfg)


def load_native(source: str | os.PathLike[str], dtype: torch.dtype) -> NativeDecoder:
    """Build the decoder without initialising it and assign the checkpoint's tensors (no init pass, no second copy)."""
    from safetensors.torch import load_file

    cfg = NativeConfig(read_config(source) or {})
    model = NativeDecoder(cfg)  # uninitialised storage (no init pass), replaced below
    state: dict[str, torch.Tensor] = {}
    for path in weight_files(source):
        for key, tensor in load_file(str(path)).items():
            if key.startswith("lm_head."):
                continue
            key = key.removeprefix("model.")
            state[key] = tensor.to(dtype) if tensor.is_floating_point() else tensor
    expected = set(model.state_dict())
    missing, unexpected = expected - set(state), set(state) - expected
    if missing or unexpected:
        detail = f"missing {sorted(missing)[:3]}" if missing else f"unexpected {sorted(unexpected)[:3]}"
        raise ModelLoadError(f"cannot load {source} with the native engine: {detail}")
    model.load_state_dict(state, assign=True, strict=True)
    model.prepack_by_default()
    return model.eval()


__all__ = ["NativeDecoder", "NativeConfig", "load_native", "native_reason", "unsupported_reason", "NATIVE_FAMILIES"]
