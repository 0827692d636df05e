"""Shared fixtures: an isolated cache, offline Hub, tiny models and a tiny tokenizer.

Tiny random decoders (hidden 64, 2 layers) keep the suite fast; a few tests
marked ``slow`` run the real SmolLM2 and share one converted copy per session.
"""
from __future__ import annotations

import os

os.environ.setdefault("HF_HUB_OFFLINE", "1")  # before transformers/huggingface_hub import
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
# dtype="auto" fixed per host by its flags, so no test pays the bf16/fp32 calibration
# (tests/test_dtype_choice.py tests the decision itself, with this unset)
if "LLM2VEC_RAG_DTYPE" not in os.environ:
    from llm2vec_rag.runtime import cpu_has_fast_bf16  # noqa: E402

    os.environ["LLM2VEC_RAG_DTYPE"] = "bfloat16" if cpu_has_fast_bf16() else "float32"

from pathlib import Path  # noqa: E402

import pytest  # noqa: E402
import torch  # noqa: E402

from tiny_models import TINY_CONFIGS, tiny_config  # noqa: E402

torch.set_num_threads(min(2, torch.get_num_threads()))

REPO = Path(__file__).resolve().parents[1]
DATA = Path(os.environ.get("LLM2VEC_RAG_DATA", REPO.parent / "shared" / "data")).resolve()

CORPUS = [
    "Cells are the basic structural and functional unit of every living organism.",
    "The mitochondrion produces most of the chemical energy that powers a cell.",
    "Aircraft wings are shaped so that moving air generates lift.",
    "A jet engine pushes air backwards to move the plane forwards.",
    "Retrieval systems embed queries and documents into the same vector space.",
    "Bidirectional attention lets every token attend to every other token.",
    "Rivers carry sediment from mountains down to the sea.",
    "Proteins fold into shapes that determine what they do in the body.",
] * 4


@pytest.fixture(scope="session")
def real_cache(tmp_path_factory) -> Path:
    """One converted SmolLM2 per test session (conversion takes ~20 s)."""
    return tmp_path_factory.mktemp("real-cache")


@pytest.fixture(autouse=True)
def isolated_cache(request, tmp_path, monkeypatch):
    """Every test gets its own cache dir, except slow tests, which share the session's converted model."""
    if request.node.get_closest_marker("slow"):
        path = request.getfixturevalue("real_cache")
    else:
        path = tmp_path / "cache"
    monkeypatch.setenv("LLM2VEC_RAG_CACHE", str(path))
    return path


def build_tiny_tokenizer():
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    tok = Tokenizer(models.BPE(unk_token="<unk>"))
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=512, special_tokens=["<pad>", "<s>", "</s>", "<unk>"],
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(), show_progress=False,
    )
    tok.train_from_iterator(CORPUS * 3, trainer=trainer)
    return PreTrainedTokenizerFast(
        tokenizer_object=tok, pad_token="<pad>", bos_token="<s>", eos_token="</s>", unk_token="<unk>"
    )


@pytest.fixture(scope="session")
def tiny_tokenizer():
    return build_tiny_tokenizer()


def write_tiny_model_dir(path: Path, model_type: str = "llama", seed: int = 0, causal_lm: bool = False) -> Path:
    """A tiny random model and the tiny tokenizer; ``causal_lm`` keeps the LM head (for MNTP)."""
    from transformers import AutoModel, AutoModelForCausalLM

    torch.manual_seed(seed)
    model = (AutoModelForCausalLM if causal_lm else AutoModel).from_config(tiny_config(model_type))
    model.save_pretrained(path)
    build_tiny_tokenizer().save_pretrained(path)
    return path


@pytest.fixture(scope="session")
def tiny_model_dir(tmp_path_factory) -> Path:
    """A Hugging Face directory holding a tiny random Llama and a tiny BPE tokenizer."""
    return write_tiny_model_dir(tmp_path_factory.mktemp("tiny-llama"))


@pytest.fixture(scope="session")
def tiny_family_dirs(tmp_path_factory) -> dict[str, Path]:
    return {mt: write_tiny_model_dir(tmp_path_factory.mktemp(f"tiny-{mt}"), mt) for mt in TINY_CONFIGS}


@pytest.fixture(scope="session")
def tiny_encoder(tiny_model_dir):
    """A real LLM2Vec over the tiny Llama, fp32 on CPU (shared: do not mutate)."""
    from llm2vec_rag import LLM2Vec

    return LLM2Vec.from_pretrained(str(tiny_model_dir), dtype="float32", device="cpu")


@pytest.fixture(scope="session")
def smollm2(real_cache):
    """The real default model (bf16 auto), loaded once per session."""
    old = os.environ.get("LLM2VEC_RAG_CACHE")
    os.environ["LLM2VEC_RAG_CACHE"] = str(real_cache)
    try:
        from llm2vec_rag import LLM2Vec

        return LLM2Vec.from_pretrained("smollm2-135m")
    finally:
        if old is None:
            os.environ.pop("LLM2VEC_RAG_CACHE", None)
        else:
            os.environ["LLM2VEC_RAG_CACHE"] = old
