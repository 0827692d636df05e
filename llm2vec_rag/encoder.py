"""The ``LLM2Vec`` encoder: a decoder LLM, made bidirectional, pooled into vectors.

Public API mirrors sentence-transformers (``encode``, ``encode_queries``,
``encode_documents``, ``save``, ``from_pretrained``) so users feel at home.

>>> from llm2vec_rag import LLM2Vec                       # doctest: +SKIP
>>> m = LLM2Vec.from_pretrained("smollm2-135m")           # doctest: +SKIP
>>> m.encode_queries(["what is a cell?"]).shape           # doctest: +SKIP
(1, 576)
"""
from __future__ import annotations

import dataclasses
import functools
import hashlib
import logging
import os
import sys
import tempfile
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch

from . import bidirectional as bidi
from .adapters import apply_adapters
from .embedded import DEFAULT_MODEL
from .errors import LLM2VecError
from .instructions import Tokenized, split_input, tokenize_all
from .hub import HubOptions
from .loading import choose_engine, load_base, looks_like_model, pick_device, pick_dtype, transformers_kwargs
from .pooling import POOLING_MODES, PoolingMode, check_pooling_mode, pool
from .reference import REFERENCE_DOC_MAX_LENGTH, ChatTemplate, chat_template, cut_to_words
from .resolve import fetch_hub, read_reference_settings, resolve_adapter, resolve_model, written_by_reference
from .runtime import resolve_device, resolve_dtype

logger = logging.getLogger(__name__)

DEFAULT_QUERY_INSTRUCTION = "Given a web search query, retrieve relevant passages that answer the query:"
PROGRESS_THRESHOLD = 512  # show_progress_bar=None shows a bar from this many inputs on
# default token budget per batch = batch_size x this. CPUs run faster with smaller batches whose
# activations stay in cache (SmolLM2 on 2 cores, benchmarks/batch_budget.py: 300 queries 3.6 s at
# 512 tokens, 3.8 s at 1,024, 5.0 s at 2,048; docs/performance.md); GPUs want big ones.
TOKENS_PER_BATCH_SLOT = {"cpu": 16, "default": 256}


def plan_batches(lengths: Sequence[int], max_tokens: int) -> list[list[int]]:
    """Indices grouped longest first, each batch's padded size (count x longest) within ``max_tokens``.

    A text longer than the budget still gets a batch of its own.
    """
    if max_tokens < 1:
        raise LLM2VecError(f"max_batch_tokens must be at least 1, got {max_tokens}")
    order = sorted(range(len(lengths)), key=lambda i: -lengths[i])
    batches: list[list[int]] = []
    current: list[int] = []
    for i in order:
        longest = lengths[current[0]] if current else lengths[i]
        if current and (len(current) + 1) * longest > max_tokens:
            batches.append(current)
            current = []
        current.append(i)
    if current:
        batches.append(current)
    return batches


class LLM2Vec:
    """A text encoder over any decoder-only LLM (or a sentence-transformers encoder)."""

    def __init__(
        self,
        model: torch.nn.Module,
        tokenizer: Any,
        pooling_mode: PoolingMode = "mean",
        max_length: int = 512,
        enable_bidirectional: bool = True,
        query_instruction: str = DEFAULT_QUERY_INSTRUCTION,
        document_instruction: str = "",
        normalize: bool = False,
        include_special_tokens: bool = False,
        name: str = "custom",
        adapters: Sequence[str] = (),
        compile: bool = False,
        doc_max_length: int | None = None,
        skip_instruction: bool = True,
        chat_template: ChatTemplate | None = None,
    ) -> None:
        self.model = model
        self.compile = bool(compile)
        self._compiled: Any = None
        self.tokenizer = tokenizer
        self.pooling_mode = check_pooling_mode(pooling_mode)
        if int(max_length) < 1:
            raise LLM2VecError(f"max_length must be at least 1, got {max_length}")
        self.max_length = int(max_length)
        self.query_instruction = query_instruction
        self.document_instruction = document_instruction
        self.normalize = normalize
        self.include_special_tokens = include_special_tokens
        self.name = name
        self.adapters = [str(a) for a in adapters]
        if doc_max_length is not None and int(doc_max_length) < 1:
            raise LLM2VecError(f"doc_max_length must be at least 1, got {doc_max_length}")
        # the reference's settings (llm2vec 0.2.3): cut texts by words, pool the instruction too, chat turns
        self.doc_max_length = None if doc_max_length is None else int(doc_max_length)
        self.skip_instruction = bool(skip_instruction)
        self.chat_template = chat_template
        self.tensor_outputs = False  # encode() returns torch tensors by default, as the reference does
        self._fingerprint: str | None = None
        self.engine = "native" if type(model).__module__.endswith(".native") else "transformers"
        self.load_spec: dict[str, Any] | None = None  # set by from_pretrained
        tokenizer.padding_side = "left"
        if tokenizer.pad_token_id is None:
            tokenizer.pad_token = tokenizer.eos_token
        self.native_bidirectional = bidi.is_native_bidirectional(model)
        self.enable_bidirectional = True if self.native_bidirectional else bool(enable_bidirectional)
        if not self.native_bidirectional:
            bidi.set_bidirectional(model, self.enable_bidirectional)
        model.eval()

    # ------------------------------------------------------------------ loading
    @classmethod
    def from_pretrained(
        cls,
        model: str | os.PathLike[str] | None = None,
        pooling_mode: PoolingMode | None = None,
        max_length: int | None = None,
        enable_bidirectional: bool | None = None,
        adapters: Sequence[str | os.PathLike[str]] | str | None = None,
        merge_adapters: bool = False,
        dtype: str | torch.dtype = "auto",
        device: str | torch.device = "auto",
        query_instruction: str | None = None,
        document_instruction: str | None = None,
        compile: bool = False,
        engine: str = "auto",
        *,
        base_model_name_or_path: str | os.PathLike[str] | None = None,
        peft_model_name_or_path: str | os.PathLike[str] | None = None,
        merge_peft: bool | None = None,
        torch_dtype: str | torch.dtype | None = None,
        device_map: str | torch.device | None = None,
        attn_implementation: str | None = None,
        doc_max_length: int | None = None,
        skip_instruction: bool | None = None,
        revision: str | None = None,
        cache_dir: str | os.PathLike[str] | None = None,
        token: str | bool | None = None,
        local_files_only: bool | None = None,
        **hf_kwargs: Any,
    ) -> LLM2Vec:
        """Load an embedded model name, a ``.gguf`` file, a local or Hub model, or a saved encoder.

        Arguments left as ``None`` take the value saved with the model (a
        directory written by :meth:`save`, or a sentence-transformers layout),
        else the defaults: mean pooling, 512 tokens, bidirectional attention.
        ``adapters`` are applied in order after any the model already carries.
        ``compile`` runs inference through ``torch.compile`` (compiled on the first
        ``encode``: about a minute on a small CPU, then ~1.4x faster; docs/performance.md).
        ``engine``: ``"native"`` runs Llama/Mistral/Qwen2/Qwen3 checkpoints through
        :mod:`llm2vec_rag.native` (fast start-up, fp32 residual stream), ``"transformers"``
        through transformers; ``"auto"`` (or ``$LLM2VEC_RAG_ENGINE``) picks native where it is exact.

        A published LLM2Vec directory (``…-mntp``: ``config.json`` and a LoRA adapter whose
        ``adapter_config.json`` names the base) loads as that base with the adapter merged.

        **llm2vec 0.2.3 keywords** are accepted with the reference's meaning:
        ``LLM2Vec.from_pretrained(base_model_name_or_path, peft_model_name_or_path, merge_peft,
        enable_bidirectional, torch_dtype=..., device_map=..., attn_implementation=...,
        doc_max_length=..., skip_instruction=..., revision=..., cache_dir=..., token=...,
        local_files_only=...)``, positionally too (a bool third argument is ``merge_peft``, even after
        ``None``); ``llm2vec_config.json`` is read from the peft adapter's directory when one is given, else
        from the model folder, as the reference reads it.
        A call using any of ``base_model_name_or_path``, ``peft_model_name_or_path``, ``merge_peft``,
        ``torch_dtype``, ``device_map``, ``doc_max_length`` or ``skip_instruction`` also takes the
        reference's defaults: float32, ``doc_max_length=400``, and ``encode`` returning torch tensors.
        """
        # the reference's positional order is (base, peft, merge_peft, enable_bidirectional): a model path
        # second is the peft adapter; a bool third is merge_peft whatever the second (None included);
        # the fourth, enable_bidirectional, is the same in both orders
        if pooling_mode is not None and pooling_mode not in POOLING_MODES and looks_like_model(pooling_mode):
            if peft_model_name_or_path is not None:
                raise LLM2VecError("peft_model_name_or_path given twice (second positional argument and keyword)")
            peft_model_name_or_path, pooling_mode = pooling_mode, None
        if isinstance(max_length, bool):  # never a length: the reference's merge_peft
            if merge_peft is not None:
                raise LLM2VecError("merge_peft given twice (third positional argument and keyword)")
            merge_peft, max_length = bool(max_length), None
        if base_model_name_or_path is not None:
            if model is not None:
                raise LLM2VecError("give the model once: model or base_model_name_or_path, not both")
            model = base_model_name_or_path
        if model is None:
            model = DEFAULT_MODEL
        reference_style = any(v is not None for v in (
            base_model_name_or_path, peft_model_name_or_path, merge_peft, torch_dtype, device_map,
            doc_max_length, skip_instruction))
        dtype = pick_dtype(dtype, torch_dtype, reference_style)
        device = pick_device(device, device_map)
        model_kwargs = transformers_kwargs(hf_kwargs, attn_implementation)
        if "token" in model_kwargs:  # use_auth_token, the old name
            token = model_kwargs.pop("token") if token is None else token
        hub = HubOptions(revision=revision, cache_dir=None if cache_dir is None else os.fspath(cache_dir),
                         token=token, local_files_only=bool(local_files_only))
        if model_kwargs:
            if engine == "native":
                raise LLM2VecError(f"the native engine takes no transformers options ({', '.join(model_kwargs)}); "
                                   "use engine='transformers'")
            engine = "transformers"

        resolved = fetch_hub(resolve_model(model), hub)
        if resolved.kind == "embedded" and resolved.adapters:  # shipped adapters: merged once, cached
            from .merged import merged_dir

            resolved = dataclasses.replace(
                resolved, source=str(merged_dir(resolved.name, resolved.source, resolved.adapters)), adapters=[])
        saved = dict(resolved.settings)
        torch_device = resolve_device(device)
        torch_dtype_ = resolve_dtype(dtype, torch_device)
        extra_specs = [adapters] if isinstance(adapters, (str, os.PathLike)) else list(adapters or [])
        if peft_model_name_or_path is not None:
            extra_specs.insert(0, peft_model_name_or_path)
        extra = [resolve_adapter(a, hub) for a in extra_specs]
        # llm2vec_config.json: the reference reads the adapter directory's when given one, else the model folder's
        if not extra:
            saved.update(resolved.reference_settings)
        for adapter_dir in extra:
            saved.update(read_reference_settings(adapter_dir))
        all_adapters = [*resolved.adapters, *extra]
        chosen = choose_engine(engine, resolved, all_adapters)
        base, tokenizer = load_base(resolved, torch_dtype_, engine=chosen, model_kwargs=model_kwargs)
        base = apply_adapters(base, all_adapters, merge_last=merge_adapters or bool(merge_peft))
        base.to(torch_device)

        def pick(value, key, default):
            return value if value is not None else saved.get(key, default)

        encoder = cls(
            base,
            tokenizer,
            pooling_mode=pick(pooling_mode, "pooling_mode", "mean"),
            max_length=pick(max_length, "max_length", 512),
            enable_bidirectional=pick(enable_bidirectional, "enable_bidirectional", True),
            query_instruction=pick(query_instruction, "query_instruction", DEFAULT_QUERY_INSTRUCTION),
            document_instruction=pick(document_instruction, "document_instruction", ""),
            normalize=saved.get("normalize", False),
            include_special_tokens=saved.get("include_special_tokens", False),
            name=saved.get("name", resolved.name),
            adapters=[*saved.get("adapter_names", []), *[str(a) for a in extra]],
            compile=compile,
            doc_max_length=pick(doc_max_length, "doc_max_length", REFERENCE_DOC_MAX_LENGTH if reference_style else None),
            skip_instruction=pick(skip_instruction, "skip_instruction", True),
            chat_template=(ChatTemplate(**saved["chat_template"]) if isinstance(saved.get("chat_template"), dict)
                           else chat_template(resolved.name_or_path)),
        )
        encoder.tensor_outputs = reference_style
        _warn_causal_qwen2(encoder, all_adapters)
        # what a worker process needs to load the same encoder (see parallel.py)
        encoder.load_spec = {
            "model": os.fspath(model) if not isinstance(model, str) else model,
            "pooling_mode": encoder.pooling_mode, "max_length": encoder.max_length,
            "enable_bidirectional": encoder.enable_bidirectional, "adapters": [str(a) for a in extra] or None,
            "merge_adapters": merge_adapters or bool(merge_peft), "query_instruction": encoder.query_instruction,
            "document_instruction": encoder.document_instruction, "compile": encoder.compile,
            "engine": engine, "revision": revision, "cache_dir": hub.cache_dir, "token": token,
            "local_files_only": local_files_only,
            # only when set: either keyword makes a worker's call reference-style (other defaults)
            **({"doc_max_length": encoder.doc_max_length} if encoder.doc_max_length is not None else {}),
            **({"skip_instruction": False} if not encoder.skip_instruction else {}),
            **({"attn_implementation": attn_implementation} if attn_implementation is not None else {}),
        }
        encoder.engine = chosen
        return encoder

    # ----------------------------------------------------------------- encoding
    @property
    def dim(self) -> int:
        return int(self.model.config.hidden_size)

    @property
    def device(self) -> torch.device:
        return next(self.model.parameters()).device

    def encode(
        self,
        sentences: str | Sequence[str | Sequence[str]],
        batch_size: int = 32,
        show_progress_bar: bool | None = None,
        normalize_embeddings: bool = False,
        convert_to_numpy: bool | None = None,
        convert_to_tensor: bool = False,
        max_batch_tokens: int | None = None,
        device: str | torch.device | None = None,
    ) -> np.ndarray | torch.Tensor:
        """Embed strings or ``[instruction, text]`` pairs; a single string gives a 1-D vector.

        Texts longer than ``max_length`` tokens are truncated at the end.
        Texts are sorted by length and packed into batches by a token budget
        (``max_batch_tokens``, default ``batch_size`` × 64 padded tokens on CPU, × 256 on GPU), so
        short texts share big batches and long ones small: the budget, not the
        count, bounds memory. Output keeps input order.

        Returns numpy (float32) unless ``convert_to_tensor`` or ``convert_to_numpy=False``; an
        encoder loaded with the reference's keywords returns torch tensors by default, as
        ``llm2vec`` does. ``device`` moves the model there first (the reference's argument).
        """
        single = isinstance(sentences, str)
        items = [sentences] if single else list(sentences)
        if batch_size < 1:
            raise LLM2VecError(f"batch_size must be at least 1, got {batch_size}")
        if device is not None and torch.device(device) != self.device:
            self.model.to(torch.device(device))
        tokenized = self.tokenize_inputs(items)
        out = torch.empty((len(items), self.dim), dtype=torch.float32)
        slot = TOKENS_PER_BATCH_SLOT.get(self.device.type, TOKENS_PER_BATCH_SLOT["default"])
        budget = max_batch_tokens if max_batch_tokens is not None else batch_size * slot
        batches = plan_batches([len(t.ids) for t in tokenized], budget)
        show = show_progress_bar if show_progress_bar is not None else len(items) >= PROGRESS_THRESHOLD
        progress = None
        if show:
            from tqdm.auto import tqdm

            progress = tqdm(total=len(items), desc="Encoding", unit="text", file=sys.stderr)
        with torch.inference_mode():
            for batch in batches:
                out[batch] = self._encode_batch([tokenized[i] for i in batch]).cpu()
                if progress is not None:
                    progress.update(len(batch))
        if progress is not None:
            progress.close()
        if normalize_embeddings or self.normalize:
            out = torch.nn.functional.normalize(out, p=2, dim=-1)
        if single:
            out = out[0]
        if convert_to_tensor:
            return out
        if convert_to_numpy is None:
            convert_to_numpy = not self.tensor_outputs
        return out.numpy() if convert_to_numpy else out

    def tokenize_inputs(self, items: Sequence[Any]) -> list[Tokenized]:
        """Token ids and pooled-token masks of strings / ``[instruction, text]`` pairs, as :meth:`encode` runs them."""
        for i, item in enumerate(items):
            split_input(item, i)  # TypeError naming the position, before any work
        if self.doc_max_length is not None:
            items = [self._cut(item) for item in items]
        return tokenize_all(
            self.tokenizer,
            items,
            self.max_length,
            append_eos=self.pooling_mode == "eos_token",
            prepend_bos=self.pooling_mode == "bos_token",
            include_special_tokens=self.include_special_tokens,
            pool_all=not self.skip_instruction,
            template=self.chat_template,
        )

    def _cut(self, item: Any) -> Any:
        """The reference's ``doc_max_length``: the text (not the instruction) cut by words."""
        if isinstance(item, str):
            return cut_to_words(self.tokenizer, item, self.doc_max_length, self.max_length)
        return [item[0], cut_to_words(self.tokenizer, item[1], self.doc_max_length, self.max_length)]

    def _encode_batch(self, batch: list[Tokenized]) -> torch.Tensor:
        return forward_batch(self._inference_model(), batch, int(self.tokenizer.pad_token_id), self.pooling_mode,
                             self.device)

    def _inference_model(self) -> torch.nn.Module:
        """The model, or its ``torch.compile`` form (dynamic shapes: batches differ in length)."""
        if not self.compile:
            return self.model
        if self._compiled is None or getattr(self._compiled, "_orig_mod", None) is not self.model:
            self._compiled = torch.compile(self.model, dynamic=True)
        return self._compiled

    def encode_queries(self, queries: str | Sequence[str], instruction: str | None = None, **options: Any):
        """Embed queries with an instruction (the model's default query instruction when None)."""
        instr = self.query_instruction if instruction is None else instruction
        return self._encode_with(instr, queries, options)

    def encode_documents(self, documents: str | Sequence[str], **options: Any):
        """Embed documents, with no instruction (unless the model was saved with one)."""
        return self._encode_with(self.document_instruction, documents, options)

    def _encode_with(self, instruction: str, texts: str | Sequence[Any], options: dict[str, Any]):
        if isinstance(texts, str):
            return self.encode([[instruction, texts]], **options)[0]
        return self.encode([[instruction, t] if isinstance(t, str) else t for t in texts], **options)

    # ------------------------------------------------------- multi-process
    def start_multi_process_pool(self, target_devices: Sequence[str] | None = None):
        """One model per worker: every CUDA device by default, else two CPU workers."""
        from .parallel import start_pool

        load_kwargs = dict(self.load_spec or {})
        tmpdir = None
        if not load_kwargs:  # built in memory, not by from_pretrained: the workers load a saved copy
            tmpdir = tempfile.TemporaryDirectory(prefix="llm2vec-rag-pool-")
            self.save(os.path.join(tmpdir.name, "model"))
            load_kwargs = {"model": os.path.join(tmpdir.name, "model")}
        load_kwargs["dtype"] = str(next(self.model.parameters()).dtype).removeprefix("torch.")
        return start_pool(functools.partial(load_on_device, load_kwargs), target_devices, tmpdir=tmpdir)

    def encode_multi_process(self, sentences: Sequence[Any], pool, chunk_size: int = 1000, **options: Any) -> np.ndarray:
        """Like :meth:`encode`, spread over the workers of ``pool``; output in input order."""
        from .parallel import encode_with_pool

        if not sentences:
            return np.zeros((0, self.dim), dtype=np.float32)
        options.setdefault("convert_to_numpy", True)
        return encode_with_pool(pool, sentences, chunk_size=chunk_size, **options)

    @staticmethod
    def stop_multi_process_pool(pool) -> None:
        from .parallel import stop_pool

        stop_pool(pool)

    # ----------------------------------------------------------------- checks
    def check_bidirectional(self) -> dict[str, bool]:
        """Cheap self-check: raises unless attention is as configured (two tiny forward passes)."""
        return bidi.check_attention(
            self.model, self.enable_bidirectional, pad_token_id=int(self.tokenizer.pad_token_id)
        )

    def fingerprint(self) -> str:
        """A short hash of the weights (adapters included) and the settings that shape vectors.

        Stable across fp32/bf16 loads of the same weights: it hashes a strided
        sample of every tensor rounded to bf16.
        """
        if self._fingerprint is None:
            h = hashlib.sha256()
            for key in ("pooling_mode", "enable_bidirectional", "include_special_tokens", "normalize"):
                h.update(f"{key}={getattr(self, key)};".encode())
            # the reference's settings, hashed only when they are not the defaults (older hashes stay valid)
            if not self.skip_instruction:
                h.update(b"skip_instruction=False;")
            if self.doc_max_length is not None:
                h.update(f"doc_max_length={self.doc_max_length};".encode())
            if self.chat_template is not None:
                h.update(f"chat_template={self.chat_template.prefix!r}{self.chat_template.suffix!r};".encode())
            with torch.no_grad():
                for name, param in sorted(self.model.named_parameters(), key=lambda kv: kv[0]):
                    flat = param.detach().reshape(-1)
                    stride = max(1, flat.numel() // 4096)
                    sample = flat[::stride].to(torch.bfloat16).view(torch.int16).cpu().numpy()
                    h.update(name.replace("base_model.model.", "").encode())
                    h.update(str(tuple(param.shape)).encode())
                    h.update(sample.tobytes())
            self._fingerprint = h.hexdigest()[:16]
        return self._fingerprint

    # ----------------------------------------------------------------- saving
    def save(self, path: str | os.PathLike[str], merge_before_save: bool = False, save_config: bool = True) -> Path:
        """Write a self-contained directory that :meth:`from_pretrained` reloads to identical vectors.

        The two keywords mean what they mean in llm2vec 0.2.3: ``merge_before_save`` merges an
        unmerged adapter into this encoder's model (for good, as the reference does) and saves the merged
        weights; ``save_config=False`` writes the weights and tokenizer only, with none of the settings
        files (a reload then takes the defaults).
        """
        from .adapters import is_peft
        from .saving import save_encoder

        if merge_before_save and is_peft(self.model):
            self.model = self.model.merge_and_unload()
            self._fingerprint = None  # the parameter names changed (the hash of the weights barely)
            if self.load_spec is not None:
                self.load_spec["merge_adapters"] = True
        return save_encoder(self, Path(path), settings=save_config)

    def __repr__(self) -> str:
        return (
            f"LLM2Vec(name={self.name!r}, dim={self.dim}, pooling_mode={self.pooling_mode!r}, "
            f"bidirectional={self.enable_bidirectional}, max_length={self.max_length}, "
            f"dtype={next(self.model.parameters()).dtype}, device={self.device}, engine={self.engine!r})"
        )


def load_on_device(load_kwargs: dict[str, Any], device: str) -> LLM2Vec:
    """``LLM2Vec.from_pretrained(**load_kwargs)`` on ``device``: what a pool worker runs (picklable)."""
    return LLM2Vec.from_pretrained(**{**load_kwargs, "device": device})


def forward_batch(
    model: torch.nn.Module,
    batch: Sequence[Tokenized],
    pad_token_id: int,
    pooling_mode: PoolingMode = "mean",
    device: torch.device | str | None = None,
) -> torch.Tensor:
    """Left-pad tokenized inputs, run ``model`` and pool: (batch, dim) float32, differentiable.

    The one forward pass behind :meth:`LLM2Vec.encode` (which wraps it in
    ``inference_mode``) and the training losses (which need its gradients).
    """
    if device is None:
        device = next(model.parameters()).device
    features = {k: v.to(device) for k, v in pad_batch(batch, pad_token_id).items()}
    return pool(forward_padded(model, features), features["text_mask"], features["attention_mask"], pooling_mode)


def pad_batch(batch: Sequence[Tokenized], pad_token_id: int) -> dict[str, torch.Tensor]:
    """Left-padded ``input_ids``, ``attention_mask``, ``position_ids`` and the pooled ``text_mask``."""
    width = max(len(t.ids) for t in batch)
    ids = torch.full((len(batch), width), int(pad_token_id), dtype=torch.long)
    attention = torch.zeros((len(batch), width), dtype=torch.long)
    text_mask = torch.zeros((len(batch), width), dtype=torch.long)
    for row, t in enumerate(batch):
        n = len(t.ids)
        ids[row, width - n :] = torch.tensor(t.ids, dtype=torch.long)
        attention[row, width - n :] = 1
        text_mask[row, width - n :] = torch.tensor(t.text_mask, dtype=torch.long)
    positions = (attention.cumsum(-1) - 1).clamp(min=0)
    return {"input_ids": ids, "attention_mask": attention, "position_ids": positions, "text_mask": text_mask}


def forward_padded(model: torch.nn.Module, features: dict[str, torch.Tensor]) -> torch.Tensor:
    """The last hidden states of a :func:`pad_batch` batch (already on the model's device)."""
    return model(input_ids=features["input_ids"], attention_mask=features["attention_mask"],
                 position_ids=features["position_ids"]).last_hidden_state


def _warn_causal_qwen2(encoder: LLM2Vec, adapters: Sequence[Any]) -> None:
    """llm2vec 0.2.3's Qwen2 runs causal (docs/parity.md): its Qwen2 adapters were trained causal."""
    if not encoder.enable_bidirectional or bidi.model_type(encoder.model) != "qwen2":
        return
    for adapter in adapters:
        if written_by_reference(adapter):
            logger.warning("%s: a Qwen2 adapter from llm2vec 0.2.3, whose Qwen2 model runs causal, so it was trained "
                           "causal; loaded bidirectional as asked: pass enable_bidirectional=False for the vectors it "
                           "was trained for (docs/parity.md)", adapter)
            return
