"""Write an encoder as a self-contained directory, plus sentence-transformers descriptors.

Layout::

    llm2vec_config.json          our settings (pooling, max length, instructions, base, adapters)
    config.json, model.safetensors, tokenizer files     the base weights
    adapter/                     the unmerged LoRA adapter, when there is one
    modules.json, config_sentence_transformers.json, sentence_bert_config.json, 1_Pooling/config.json

The directory is written beside its target and renamed into place, so an
interrupted save never leaves a half-written model where a good one was.
"""
from __future__ import annotations

import json
import shutil
import tempfile
from pathlib import Path
from typing import TYPE_CHECKING

from .adapters import base_state_dict, is_peft
from .bidirectional import clear_bidirectional
from .resolve import LLM2VEC_CONFIG

if TYPE_CHECKING:
    from .encoder import LLM2Vec

FORMAT_VERSION = 1


def save_encoder(encoder: LLM2Vec, path: Path) -> Path:
    path = path.expanduser()
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{path.name}.", dir=path.parent))
    try:
        adapters = _write_weights(encoder, tmp)
        encoder.tokenizer.save_pretrained(tmp)
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
            "adapters": adapters,
            "adapter_names": encoder.adapters,
            "dim": encoder.dim,
        }
        _write_json(tmp / LLM2VEC_CONFIG, settings)
        _write_sentence_transformers(encoder, tmp)
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


def _write_weights(encoder: LLM2Vec, out: Path) -> list[str]:
    """Base weights as safetensors; an unmerged adapter beside them. Returns adapter dirs."""
    model = encoder.model
    if not is_peft(model):
        config_had = getattr(model.config, "is_causal", None)
        clear_bidirectional(model.config)
        try:
            model.save_pretrained(out, safe_serialization=True)
        finally:
            if config_had is not None:
                model.config.is_causal = config_had
        return []
    from safetensors.torch import save_file

    base = model.get_base_model()
    state = {k: v.detach().contiguous().cpu() for k, v in base_state_dict(model).items()}
    save_file(state, str(out / "model.safetensors"), metadata={"format": "pt"})
    config = base.config.to_dict()
    config.pop("is_causal", None)
    _write_json(out / "config.json", config)
    model.save_pretrained(out / "adapter")
    return ["adapter"]


def _write_sentence_transformers(encoder: LLM2Vec, out: Path) -> None:
    """So tools reading the sentence-transformers layout find the prompts and the pooling."""
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


def _write_json(path: Path, data: object) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(data, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
