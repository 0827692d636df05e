"""Write an encoder as a self-contained directory that the ecosystem reads right, or not at all.

Layout (format 2)::

    llm2vec_rag.json             our settings (pooling, max length, instructions, adapters, format_version)
    llm2vec_config.json          the reference's four keys only (llm2vec 0.2.3 passes them to its constructor)
    config.json, model.safetensors, tokenizer files     the base weights (earlier adapters merged)
    adapter_config.json, adapter_model.safetensors      the unmerged LoRA adapter, when there is one

Written for three readers:

* **llm2vec 0.2.3** (transformers 4.44, peft 0.12): ``config.json`` carries a top-level
  ``rope_theta`` and ``torch_dtype`` (4.44 ignores v5's ``rope_parameters`` and would silently use
  rope_theta 10000), the tokenizer is the generic ``PreTrainedTokenizerFast`` with string BPE
  merges (tokenizers 0.19), ``adapter_config.json`` holds only keys peft 0.12 knows, and names this
  directory as its base by absolute path, so ``LLM2Vec.from_pretrained(dir)`` loads base + adapter
  as it does for the published checkpoints (benchmarks/parity_reference.py --published measures it).
  4.44 loads the base from that path as given (a relative one against the working directory, so
  ``.`` would not do); our loader ignores it, so the folder moves for us, not for the reference.
* **transformers 5** applies an adapter it finds beside a ``config.json`` on its own.
* **sentence-transformers** cannot reproduce bidirectional attention without custom code, and its
  own ``Transformer`` module would load a decoder causal with its pooling (silently wrong vectors).
  So for decoders ``modules.json`` names one module, ``llm2vec_rag.integrations.sentence_transformers
  .LLM2VecModule`` (this package's encoder: same vectors), which sentence-transformers 6 imports only
  with ``trust_remote_code=True`` and which fails to import without this package: a clear error,
  never a wrong load. Encoders that are bidirectional already (BERT and the like) get the standard
  sentence-transformers files (Transformer, Pooling, Normalize).

Format 1 (``llm2vec_config.json`` with ``format_version``, the adapter in ``adapter/``) still loads.
The directory is written beside its target and renamed into place, so an interrupted save never
leaves a half-written model where a good one was.
"""
from __future__ import annotations

import json
import shutil
import tempfile
from pathlib import Path
from typing import TYPE_CHECKING, Any

from .adapters import ADAPTER_CONFIG, base_state_dict, is_peft
from .bidirectional import clear_bidirectional, is_native_bidirectional
from .resolve import LLM2VEC_CONFIG, LLM2VEC_RAG_CONFIG, REFERENCE_KEYS

if TYPE_CHECKING:
    from .encoder import LLM2Vec

FORMAT_VERSION = 2
# LoraConfig fields of peft 0.12 (what llm2vec 0.2.3 runs with); it raises on any other key
PEFT_0_12_LORA_FIELDS = frozenset({
    "alpha_pattern", "auto_mapping", "base_model_name_or_path", "bias", "fan_in_fan_out", "inference_mode",
    "init_lora_weights", "layer_replication", "layers_pattern", "layers_to_transform", "loftq_config",
    "lora_alpha", "lora_dropout", "megatron_config", "megatron_core", "modules_to_save", "peft_type", "r",
    "rank_pattern", "revision", "runtime_config", "target_modules", "task_type", "use_dora", "use_rslora",
})
GENERIC_TOKENIZER_CLASS = "PreTrainedTokenizerFast"  # what transformers 4.x and 5 both read
ST_MODULE = "llm2vec_rag.integrations.sentence_transformers.LLM2VecModule"  # a decoder's one ST module


def save_encoder(encoder: LLM2Vec, path: Path, settings: bool = True) -> Path:
    """Write ``encoder`` to ``path``; without ``settings`` only the weights and tokenizer (the reference's ``save_config=False``)."""
    path = path.expanduser()
    path.parent.mkdir(parents=True, exist_ok=True)
    final = path.resolve()
    tmp = Path(tempfile.mkdtemp(prefix=f".{path.name}.", dir=path.parent))
    try:
        adapters = _write_weights(encoder, tmp, final)
        encoder.tokenizer.save_pretrained(tmp)
        _portable_tokenizer(tmp)
        if settings:
            _write_settings(encoder, tmp, adapters)
        if path.exists():
            old = path.with_name(f".{path.name}.old")
            shutil.rmtree(old, ignore_errors=True)
            path.rename(old)
            tmp.rename(path)
            shutil.rmtree(old, ignore_errors=True)
        else:
            tmp.rename(path)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return path


def _write_settings(encoder: LLM2Vec, out: Path, adapters: list[str]) -> None:
    """Our settings, the reference's four keys, and the sentence-transformers files."""
    settings = {
        "format_version": FORMAT_VERSION,
        "name": encoder.name,
        "pooling_mode": encoder.pooling_mode,
        "max_length": encoder.max_length,
        "enable_bidirectional": encoder.enable_bidirectional,
        "query_instruction": encoder.query_instruction,
        "document_instruction": encoder.document_instruction,
        "normalize": encoder.normalize,
        "include_special_tokens": encoder.include_special_tokens,
        "doc_max_length": encoder.doc_max_length,
        "skip_instruction": encoder.skip_instruction,
        "adapters": adapters,
        "adapter_names": encoder.adapters,
        "dim": encoder.dim,
    }
    if encoder.chat_template is not None:
        settings["chat_template"] = {"prefix": encoder.chat_template.prefix, "suffix": encoder.chat_template.suffix}
    _write_json(out / LLM2VEC_RAG_CONFIG, settings)
    _write_json(out / LLM2VEC_CONFIG, reference_config(encoder))
    if is_native_bidirectional(encoder.model):
        _write_sentence_transformers(encoder, out)
    else:
        _write_json(out / "modules.json", [{"idx": 0, "name": "0", "path": "", "type": ST_MODULE}])
        _write_st_prompts(encoder, out)


def reference_config(encoder: LLM2Vec) -> dict[str, Any]:
    """llm2vec 0.2.3's ``llm2vec_config.json``: its four keys, meaning what ours mean.

    No ``doc_max_length`` of ours (None) is the reference's ``max_length``: its word cut then never applies.
    """
    values = {"pooling_mode": encoder.pooling_mode, "max_length": encoder.max_length,
              "doc_max_length": encoder.doc_max_length or encoder.max_length,
              "skip_instruction": encoder.skip_instruction}
    return {k: values[k] for k in REFERENCE_KEYS}


def _write_weights(encoder: LLM2Vec, out: Path, final: Path) -> list[str]:
    """Base weights as safetensors; an unmerged adapter beside them. Returns adapter dirs (relative)."""
    model = encoder.model
    if not is_peft(model):
        config_had = getattr(model.config, "is_causal", None)
        clear_bidirectional(model.config)
        try:
            model.save_pretrained(out, safe_serialization=True)
        finally:
            if config_had is not None:
                model.config.is_causal = config_had
        _portable_config(out / "config.json")
        return []
    from safetensors.torch import save_file

    base = model.get_base_model()
    state = {k: v.detach().contiguous().cpu() for k, v in base_state_dict(model).items()}
    save_file(state, str(out / "model.safetensors"), metadata={"format": "pt"})
    config = base.config.to_dict()
    config.pop("is_causal", None)
    _write_json(out / "config.json", config)
    _portable_config(out / "config.json")
    staged = out / ".adapter"
    model.save_pretrained(staged)
    for name in (ADAPTER_CONFIG, "adapter_model.safetensors"):
        shutil.move(str(staged / name), str(out / name))
    shutil.rmtree(staged, ignore_errors=True)
    _portable_adapter_config(out / ADAPTER_CONFIG, base=str(final))
    return ["."]


def _portable_config(path: Path) -> None:
    """Top-level ``rope_theta`` (and ``rope_scaling``) and ``torch_dtype`` beside v5's spellings, for transformers 4.x."""
    config = json.loads(path.read_text(encoding="utf-8"))
    rope = config.get("rope_parameters")
    if isinstance(rope, dict) and "rope_theta" in rope and "rope_theta" not in config:
        config["rope_theta"] = rope["rope_theta"]
        if rope.get("rope_type", "default") != "default" and "rope_scaling" not in config:
            config["rope_scaling"] = {k: v for k, v in rope.items() if k != "rope_theta"}
    if "dtype" in config and "torch_dtype" not in config:
        config["torch_dtype"] = config["dtype"]
    _write_json(path, config)


def _portable_adapter_config(path: Path, base: str) -> None:
    """Only keys peft 0.12 knows (others dropped where they hold their default); this directory as the base."""
    import dataclasses

    from peft import LoraConfig

    defaults = {f.name: (f.default_factory() if f.default_factory is not dataclasses.MISSING else f.default)
                for f in dataclasses.fields(LoraConfig)}
    config = json.loads(path.read_text(encoding="utf-8"))
    kept = {}
    for key, value in config.items():  # a newer key at its default is a feature left off: safe to drop
        if key in PEFT_0_12_LORA_FIELDS or (key in defaults and value != defaults[key]) or key not in defaults:
            kept[key] = value
    kept.pop("peft_version", None)
    kept["base_model_name_or_path"] = base
    _write_json(path, kept)


def _portable_tokenizer(out: Path) -> None:
    """The generic fast tokenizer class and BPE merges as ``"a b"`` strings: what transformers 4.x / tokenizers 0.19 read."""
    config_path = out / "tokenizer_config.json"
    if config_path.is_file():
        config = json.loads(config_path.read_text(encoding="utf-8"))
        if config.get("tokenizer_class") == "TokenizersBackend":
            config["tokenizer_class"] = GENERIC_TOKENIZER_CLASS
            config.pop("backend", None)
            _write_json(config_path, config)
    tok_path = out / "tokenizer.json"
    if tok_path.is_file():
        data = json.loads(tok_path.read_text(encoding="utf-8"))
        merges = (data.get("model") or {}).get("merges")
        if (isinstance(merges, list) and merges and isinstance(merges[0], list)
                and all(" " not in a and " " not in b for a, b in merges)):
            data["model"]["merges"] = [f"{a} {b}" for a, b in merges]
            tok_path.write_text(json.dumps(data, ensure_ascii=False, indent=2) + "\n", encoding="utf-8")


def _write_sentence_transformers(encoder: LLM2Vec, out: Path) -> None:
    """So tools reading the sentence-transformers layout find the prompts and the pooling (encoders only)."""
    mode = encoder.pooling_mode
    _write_json(
        out / "modules.json",
        [
            {"idx": 0, "name": "0", "path": "", "type": "sentence_transformers.models.Transformer"},
            {"idx": 1, "name": "1", "path": "1_Pooling", "type": "sentence_transformers.models.Pooling"},
            *(
                [{"idx": 2, "name": "2", "path": "2_Normalize", "type": "sentence_transformers.models.Normalize"}]
                if encoder.normalize
                else []
            ),
        ],
    )
    _write_st_prompts(encoder, out)
    _write_json(out / "sentence_bert_config.json", {"max_seq_length": encoder.max_length, "do_lower_case": False})
    _write_json(
        out / "1_Pooling" / "config.json",
        {
            "word_embedding_dimension": encoder.dim,
            "pooling_mode_cls_token": mode == "bos_token",
            "pooling_mode_mean_tokens": mode == "mean",
            "pooling_mode_max_tokens": False,
            "pooling_mode_mean_sqrt_len_tokens": False,
            "pooling_mode_weightedmean_tokens": mode == "weighted_mean",
            "pooling_mode_lasttoken": mode in ("last_token", "eos_token"),
            "include_prompt": False,
        },
    )
    if encoder.normalize:
        (out / "2_Normalize").mkdir(exist_ok=True)


def _write_st_prompts(encoder: LLM2Vec, out: Path) -> None:
    query_prompt = encoder.query_instruction.strip() + " " if encoder.query_instruction.strip() else ""
    doc_prompt = encoder.document_instruction.strip() + " " if encoder.document_instruction.strip() else ""
    _write_json(
        out / "config_sentence_transformers.json",
        {
            "prompts": {"query": query_prompt, "document": doc_prompt},
            "default_prompt_name": None,
            "similarity_fn_name": "cosine",
        },
    )


def _write_json(path: Path, data: object) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(data, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
