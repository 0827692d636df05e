"""MTEB 2.x: an encoder wrapper, and retrieval tasks built from local BEIR folders (offline).

    import mteb
    from llm2vec_rag.integrations.mteb import LLM2VecMTEB, beir_retrieval_task

    model = LLM2VecMTEB("smollm2-135m")
    task = beir_retrieval_task("/data/scifact")              # corpus.jsonl, queries.jsonl, qrels/test.tsv
    result = mteb.evaluate(model, task, cache=None)
    result.task_results[0].get_score()                       # nDCG@10

Instructions follow the LLM2Vec paper: queries get the task's instruction (the paper's per
dataset, else the one MTEB's task defines, else the encoder's query instruction); documents get
none. mteb's own LLM2Vec wrapper gives documents the instruction too; we do what the paper does.
Tasks other than retrieval (no query/document split) get the instruction on every input, as there.
Install: ``pip install mteb`` (2.x).
"""
from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from ._shared import require

require("mteb", "mteb", "mteb>=2")

from mteb.abstasks import AbsTaskRetrieval  # noqa: E402
from mteb.abstasks.task_metadata import TaskMetadata  # noqa: E402
from mteb.models import ModelMeta  # noqa: E402
from mteb.models.abs_encoder import AbsEncoder  # noqa: E402
from mteb.models.model_meta import ScoringFunction  # noqa: E402
from mteb.types import PromptType  # noqa: E402

from llm2vec_rag.evaluation.retrieval import DATASET_INSTRUCTIONS, load_beir  # noqa: E402

# MTEB task names -> the paper's BEIR names (DATASET_INSTRUCTIONS keys)
MTEB_NAMES = {"fiqa2018": "fiqa", "treccovid": "trec-covid", "quoraretrieval": "quora", "nfcorpus": "nfcorpus",
              "arguana": "arguana", "scidocs": "scidocs", "scifact": "scifact", "nq": "nq", "hotpotqa": "hotpotqa",
              "msmarco": "msmarco"}


def paper_instruction(task_name: str) -> str | None:
    """The LLM2Vec paper's instruction for a BEIR/MTEB task name, or None."""
    key = task_name.lower()
    return DATASET_INSTRUCTIONS.get(MTEB_NAMES.get(key, key))


def _as_instruction(text: str) -> str:
    """mteb's task prompts end in a period; LLM2Vec's instructions end in a colon (as mteb's llm2vec wrapper)."""
    text = text.strip()
    return text if not text or text.endswith(":") else text.rstrip(".") + ":"


class LLM2VecMTEB(AbsEncoder):
    """An :class:`llm2vec_rag.LLM2Vec` behind mteb's ``EncoderProtocol``.

    ``model``: an encoder already loaded, or what :meth:`LLM2Vec.from_pretrained` takes (then
    ``load_options`` are its keywords). ``instructions`` maps task names to query instructions
    and wins over the paper's and the task's own.
    """

    def __init__(self, model: Any = "smollm2-135m", revision: str | None = None, *, device: str | None = None,
                 instructions: Mapping[str, str] | None = None, name: str | None = None, **load_options: Any) -> None:
        from llm2vec_rag import LLM2Vec

        if isinstance(model, LLM2Vec):
            self.model = model
        else:
            if device is not None:
                load_options.setdefault("device", device)
            self.model = LLM2Vec.from_pretrained(model, **load_options)
        self.instructions = dict(instructions or {})
        label = name or str(self.model.name)
        if "/" not in label or os.path.sep in label and Path(label).exists():
            label = f"llm2vec-rag/{Path(label).name or label}"
        self.mteb_model_meta = ModelMeta(
            loader=None, name=label, revision=revision or self.model.fingerprint(), release_date=None,
            languages=None, n_parameters=sum(p.numel() for p in self.model.model.parameters()),
            memory_usage_mb=None, max_tokens=float(self.model.max_length), embed_dim=self.model.dim,
            license=None, open_weights=True, public_training_code=None, public_training_data=None,
            framework=["LLM2Vec", "PyTorch"], similarity_fn_name=ScoringFunction.COSINE, use_instructions=True,
            training_datasets=None,
        )

    def query_instruction(self, task_metadata: TaskMetadata, prompt_type: PromptType | None) -> str:
        """User's, else the paper's, else the task's own prompt, else the encoder's query instruction."""
        if task_metadata.name in self.instructions:
            return self.instructions[task_metadata.name]
        paper = paper_instruction(task_metadata.name)
        if paper:
            return paper
        task_prompt = self.get_instruction(task_metadata, prompt_type)
        return _as_instruction(task_prompt) if task_prompt else self.model.query_instruction

    def encode(self, inputs: Any, *, task_metadata: TaskMetadata, hf_split: str, hf_subset: str,
               prompt_type: PromptType | None = None, **kwargs: Any) -> Any:
        texts = [text for batch in inputs for text in batch["text"]]
        options = {"batch_size": int(kwargs.get("batch_size", 32)), "convert_to_numpy": True,
                   "show_progress_bar": kwargs.get("show_progress_bar")}
        if prompt_type == PromptType.document:
            return self.model.encode(texts, **options)  # documents: no instruction (the paper)
        instruction = self.query_instruction(task_metadata, prompt_type)
        return self.model.encode([[instruction, t] for t in texts], **options)


def beir_retrieval_task(data_dir: str | os.PathLike[str], name: str | None = None, split: str = "test",
                        max_docs: int | None = None, instruction: str | None = None) -> AbsTaskRetrieval:
    """An mteb retrieval task over a local BEIR folder, read by :func:`llm2vec_rag.evaluation.retrieval.load_beir`.

    Documents are ``title + " " + text`` and queries only those with a relevant document, exactly
    as ``llm2vec-rag eval retrieval`` reads them, so the two report the same nDCG@10. Nothing is
    downloaded. ``name`` defaults to the folder's name (which picks the paper's instruction).
    """
    from datasets import Dataset

    data = load_beir(data_dir, split=split, max_docs=max_docs)
    task_name = name or Path(data_dir).expanduser().resolve().name
    prompt = {"query": instruction} if instruction else None

    class LocalBeirRetrieval(AbsTaskRetrieval):
        metadata = TaskMetadata(
            name=task_name,
            description=f"BEIR folder {data_dir} ({split} split), read locally by llm2vec-rag",
            dataset={"path": str(Path(data_dir).expanduser().resolve()), "revision": data.corpus_hash},
            type="Retrieval", category="t2t", modalities=["text"], eval_splits=[split], eval_langs=["eng-Latn"],
            main_score="ndcg_at_10", prompt=prompt,
        )

        def load_data(self, num_proc: int | None = None, **kwargs: Any) -> None:
            if self.data_loaded:
                return
            corpus = Dataset.from_dict({"id": data.corpus_ids, "text": data.corpus_texts})
            queries = Dataset.from_dict({"id": list(data.queries), "text": list(data.queries.values())})
            self.dataset = {"default": {split: {"corpus": corpus, "queries": queries,
                                                "relevant_docs": {q: dict(r) for q, r in data.qrels.items()},
                                                "top_ranked": None}}}
            self.data_loaded = True

    return LocalBeirRetrieval()


__all__ = ["LLM2VecMTEB", "beir_retrieval_task", "paper_instruction"]
