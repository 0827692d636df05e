"""sentence-transformers reads a decoder saved by :meth:`llm2vec_rag.LLM2Vec.save` through this module.

sentence-transformers' own ``Transformer`` module would run a decoder causal, with its own pooling:
silently different vectors. So ``save()`` writes a ``modules.json`` whose one module is
:class:`LLM2VecModule`: our encoder (bidirectional, our pooling, instructions kept out of the pool)
behind sentence-transformers' module protocol. Loading it runs this package's code, so
sentence-transformers 6 asks for ``trust_remote_code=True``; without this package installed the
import fails: either way, never a wrong load.

    from sentence_transformers import SentenceTransformer

    model = SentenceTransformer("path/to/saved", trust_remote_code=True)
    model.encode(["a document"])                              # = LLM2Vec.from_pretrained(path).encode(...)
    model.encode(["a query"], prompt_name="query")            # = encode_queries(["a query"])
    model.encode([["Given a claim, retrieve documents:", "a claim"]])   # [instruction, text] pairs

Prompts are the encoder's instructions (``config_sentence_transformers.json``): the prompt is the
instruction of an ``[instruction, text]`` pair, not pooled text. sentence-transformers before 6 glues
the prompt onto the text before this module sees it, so there a prompt is a clear error (pass pairs).
No sentence-transformers import here: the module is a plain ``torch.nn.Module``.
"""
from __future__ import annotations

import os
from collections.abc import Sequence
from typing import Any

import torch

from llm2vec_rag.encoder import LLM2Vec, forward_padded, pad_batch
from llm2vec_rag.errors import LLM2VecError
from llm2vec_rag.pooling import pool

class LLM2VecModule(torch.nn.Module):
    """The only module of a saved decoder's sentence-transformers pipeline: tokenize, run, pool."""

    modalities = ["text"]

    def __init__(self, encoder: LLM2Vec) -> None:
        super().__init__()
        self.encoder = encoder
        self.model = encoder.model  # a submodule, so sentence-transformers' .to(device) moves it

    @classmethod
    def load(cls, model_name_or_path: str, subfolder: str = "", token: bool | str | None = None,
             cache_folder: str | None = None, revision: str | None = None, local_files_only: bool = False,
             model_kwargs: dict[str, Any] | None = None, **kwargs: Any) -> LLM2VecModule:
        """The folder (or Hub id) written by ``save()``; ``model_kwargs`` may set ``dtype`` / ``torch_dtype``.

        sentence-transformers 5+ pass these keywords; older ones pass the folder alone.
        """
        path = os.path.join(model_name_or_path, subfolder) if subfolder else model_name_or_path
        model_kwargs = model_kwargs or {}
        options: dict[str, Any] = {}
        dtype = model_kwargs.get("dtype", model_kwargs.get("torch_dtype"))
        if dtype is not None:
            options["dtype"] = dtype
        if not os.path.isdir(path):  # a Hub id: sentence-transformers' download options
            options.update(revision=revision, cache_dir=cache_folder, token=token,
                           local_files_only=bool(local_files_only))
        return cls(LLM2Vec.from_pretrained(path, **options))

    # ---------------------------------------------------- inputs
    def preprocess(self, inputs: Sequence[Any], prompt: str | None = None, **kwargs: Any) -> dict[str, torch.Tensor]:
        """sentence-transformers 6: texts or ``[instruction, text]`` pairs; a prompt is the instruction."""
        items = [self._as_item(x, prompt) for x in inputs]
        features = pad_batch(self.encoder.tokenize_inputs(items), int(self.encoder.tokenizer.pad_token_id))
        return features

    def tokenize(self, texts: Sequence[Any], **kwargs: Any) -> dict[str, torch.Tensor]:
        """Older sentence-transformers call this (with any prompt already glued onto the text)."""
        return self.preprocess(texts)

    @staticmethod
    def _as_item(item: Any, prompt: str | None) -> Any:
        if isinstance(item, tuple):
            item = list(item)
        if prompt and prompt.strip():
            if not isinstance(item, str):
                raise LLM2VecError("a sentence-transformers prompt goes with plain texts, not [instruction, text] pairs")
            return [prompt.strip(), item]
        return item

    # ---------------------------------------------------- forward
    def forward(self, features: dict[str, Any], **kwargs: Any) -> dict[str, Any]:
        if "prompt_length" in features and int(features["prompt_length"]) != self._empty_prompt_length():
            raise LLM2VecError(
                "this sentence-transformers version puts the prompt inside the text, which would pool it as text: "
                "pass [instruction, text] pairs to encode() instead of a prompt (or use sentence-transformers >= 6, "
                "or llm2vec_rag.LLM2Vec.from_pretrained)")
        hidden = forward_padded(self.model, features)
        vectors = pool(hidden, features["text_mask"], features["attention_mask"], self.encoder.pooling_mode)
        if self.encoder.normalize:
            vectors = torch.nn.functional.normalize(vectors, p=2, dim=-1)
        features.update({"token_embeddings": hidden, "sentence_embedding": vectors})
        return features

    def _empty_prompt_length(self) -> int:
        """What older sentence-transformers measure for an empty prompt (their token count minus one)."""
        return len(self.encoder.tokenize_inputs([""])[0].ids) - 1

    # ---------------------------------------------------- the rest of the protocol
    def get_sentence_embedding_dimension(self) -> int:
        return self.encoder.dim

    def get_embedding_dimension(self) -> int:
        return self.encoder.dim

    @property
    def max_seq_length(self) -> int:
        return self.encoder.max_length

    @max_seq_length.setter
    def max_seq_length(self, value: int) -> None:
        self.encoder.max_length = int(value)

    @property
    def tokenizer(self) -> Any:
        return self.encoder.tokenizer

    def save(self, output_path: str, *args: Any, **kwargs: Any) -> None:
        """sentence-transformers' ``save``: the encoder's own folder, which this module loads again."""
        self.encoder.save(output_path)
