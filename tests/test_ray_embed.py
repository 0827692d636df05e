"""Embedding with Ray Data actors (``index --ray``): same vectors as one process, in the right order.

One local Ray runtime (2 CPUs) serves the whole module; every Ray Data run starts
its actors (a tiny model load each), so the module builds as few indexes as it can.
"""
from __future__ import annotations

import json
import os
import sqlite3
import subprocess
import sys

import numpy as np
import pytest
from click.testing import CliRunner

ray = pytest.importorskip("ray")
pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning:ray.data.context")  # Ray's own, not ours

from llm2vec_rag import Index  # noqa: E402
from llm2vec_rag.cli.main import cli  # noqa: E402
from llm2vec_rag.errors import LLM2VecError  # noqa: E402
from llm2vec_rag.index import ray_embed  # noqa: E402
from llm2vec_rag.index.ray_embed import RAY_MISSING, RayEmbedder, ray_address  # noqa: E402

DOCS = {
    "cells.md": "# Cells\n\nCells are the basic unit of life. The mitochondrion produces most of the energy a cell "
                "uses. Proteins fold into shapes that decide what they do.\n\n## Division\n\nA cell divides by "
                "copying its chromosomes and splitting in two.\n",
    "planes.txt": "Aircraft wings are shaped so that moving air generates lift. A jet engine pushes air backwards "
                  "to move the plane forwards. Pilots trim the aircraft for level flight.",
    "rivers.rst": "Rivers\n======\n\nRivers carry sediment from the mountains down to the sea. Deltas form where "
                  "the current slows and the sediment settles.\n",
    "search.md": "# Retrieval\n\nRetrieval systems embed queries and documents into the same vector space. "
                 "Bidirectional attention lets every token attend to every other token.\n",
    "bread.txt": "Bake the bread in a hot oven until the crust is golden brown. Let the dough rise twice before "
                 "shaping the loaf.",
    "notes/misc.txt": "Mean pooling averages the hidden states of the text tokens. Contrastive training pulls "
                      "matching pairs together and pushes the others apart.",
}
CHUNKING = {"chunk_tokens": 16, "overlap": 2}


def write_docs(root):
    for rel, text in DOCS.items():
        path = root / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text, encoding="utf-8")
    return root


def chunk_ids(index_dir) -> list[str]:
    with sqlite3.connect(index_dir / "meta.sqlite") as conn:
        return [row[0] for row in conn.execute("SELECT doc_id FROM chunks ORDER BY doc_id")]


@pytest.fixture(scope="module")
def ray_runtime():
    started = not ray.is_initialized()
    if started:
        ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
    yield
    if started:
        ray.shutdown()


@pytest.fixture(scope="module")
def built(ray_runtime, tiny_model_dir, tmp_path_factory):
    """The same folder indexed with Ray (2 actors) and in this process."""
    root = tmp_path_factory.mktemp("ray-embed")
    docs = write_docs(root / "docs")
    common = dict(model=str(tiny_model_dir), dtype="float32", device="cpu", progress=False, log=lambda m: None,
                  **CHUNKING)
    with Index.build(docs, path=root / "ray-ix", ray="local", ray_actors=2, **common) as index:
        ray_report = index.last_report
    with Index.build(docs, path=root / "plain-ix", **common) as index:
        plain_report = index.last_report
    return {"root": root, "docs": docs, "ray": root / "ray-ix", "plain": root / "plain-ix",
            "ray_report": ray_report, "plain_report": plain_report}


def test_ray_vectors_equal_single_process_per_chunk(built):
    assert built["ray_report"].to_dict()["chunks_added"] == built["plain_report"].chunks_added
    ids = chunk_ids(built["plain"])
    assert ids == chunk_ids(built["ray"]) and len(ids) >= 12  # several batches over 2 actors
    with Index.load(built["ray"]) as ray_ix, Index.load(built["plain"]) as plain_ix:
        a, b = ray_ix.get_vectors(ids), plain_ix.get_vectors(ids)
        assert len(ray_ix) == len(plain_ix) == len(ids)
    assert a.dtype == np.float32 and np.allclose(np.linalg.norm(a, axis=1), 1.0, atol=1e-5)
    cosine = a @ b.T
    assert np.diag(cosine).min() >= 0.999
    # the order was restored: each Ray vector is closest to its own chunk's vector, not just somewhere in the set
    assert (cosine.argmax(axis=1) == np.arange(len(ids))).all()
    assert (cosine - 2 * np.eye(len(ids))).max() < 0.99


def test_embedder_keeps_input_order(built, tiny_encoder):
    texts = [f"{word} number {i} in a short line" for i, word in enumerate(
        ["rivers", "bread", "wings", "cells", "pooling", "attention", "sediment", "oven", "lift", "energy"] * 2)]
    with Index.load(built["plain"], dtype="float32") as index:
        embedder = RayEmbedder(index, "local", actors=2, batch_size=4)
        try:
            assert embedder.actors == 2 and not embedder.use_gpu and not embedder._started  # runtime reused
            got = embedder(list(reversed(texts)))[::-1]
            assert embedder([]).shape == (0, index.dim)
        finally:
            embedder.close()
    want = tiny_encoder.encode_documents(texts, normalize_embeddings=True)
    want = want / np.linalg.norm(want, axis=1, keepdims=True)
    assert got.shape == (len(texts), index.dim)
    assert np.einsum("ij,ij->i", got, want).min() >= 0.999
    assert ray.is_initialized()  # close() leaves a runtime it did not start


def test_rerun_without_changes_does_not_start_ray(built, monkeypatch):
    def refuse(*args, **kwargs):
        raise AssertionError("Ray should not be used when nothing changed")

    monkeypatch.setattr(ray_embed, "RayEmbedder", refuse)
    with Index.build(built["docs"], path=built["ray"], ray="ray://127.0.0.1:1", progress=False,
                     log=lambda m: None) as index:
        report = index.last_report
    assert (report.added, report.updated, report.unchanged, report.chunks_added) == (0, 0, len(DOCS), 0)


def test_cli_index_with_ray(built, tiny_model_dir, tmp_path):
    docs, ix = built["docs"], tmp_path / "cli-ix"
    result = CliRunner().invoke(cli, ["index", str(docs), "--index", str(ix), "--model", str(tiny_model_dir),
                                      "--dtype", "float32", "--device", "cpu", "--chunk-tokens", "16",
                                      "--overlap", "2", "--quiet", "--json", "--ray", "--ray-actors", "2"],
                                catch_exceptions=False)
    assert result.exit_code == 0, result.output
    out = json.loads(result.stdout)
    assert out["ray"] == "local" and out["added"] == len(DOCS)
    assert out["chunks_added"] == built["plain_report"].chunks_added
    ids = chunk_ids(built["plain"])
    with Index.load(ix) as a, Index.load(built["plain"]) as b:
        assert np.einsum("ij,ij->i", a.get_vectors(ids), b.get_vectors(ids)).min() >= 0.999
    # a fresh process, nothing changed: an unreachable cluster address is never contacted
    env = {**os.environ, "RAY_ADDRESS": ""}
    again = subprocess.run([sys.executable, "-m", "llm2vec_rag.cli.main", "index", str(docs), "--index", str(ix),
                            "--quiet", "--ray", "ray://127.0.0.1:1"], capture_output=True, text=True, env=env,
                           timeout=120)
    assert again.returncode == 0, again.stderr
    assert f"unchanged {len(DOCS)}" in again.stdout and "0 chunks embedded" in again.stdout


def test_missing_ray_is_a_one_line_error(built, monkeypatch, tmp_path):
    monkeypatch.setitem(sys.modules, "ray", None)
    result = CliRunner().invoke(cli, ["index", str(built["docs"]), "--index", str(tmp_path / "ix"), "--ray"])
    assert result.exit_code == 1
    assert result.stderr.strip().splitlines() == [f"error: {RAY_MISSING}"]
    assert not (tmp_path / "ix").exists()  # refused before opening the index or loading a model
    with Index.load(built["plain"], writable=True) as index:
        with pytest.raises(LLM2VecError, match=r"^Ray is not installed: pip install 'llm2vec-rag\[ray\]'$"):
            index.update(built["docs"], ray=True, progress=False)
        with pytest.raises(LLM2VecError, match="Ray is not installed"):
            RayEmbedder(index, "local")
    stray = CliRunner().invoke(cli, ["index", str(built["docs"]), "--index", str(tmp_path / "ix"),
                                     "--ray-actors", "2"])
    assert stray.exit_code == 1 and "--ray-actors needs --ray" in stray.stderr


def test_ray_address_forms():
    assert ray_address(None) is None and ray_address(True) is None and ray_address("local") is None
    assert ray_address(" auto ") == "auto" and ray_address("ray://head:10001") == "ray://head:10001"


def test_ray_writes_to_the_qdrant_backend(built, tiny_model_dir):
    """--ray and --backend qdrant together: Ray embeds, the vectors land in Qdrant, search finds them."""
    pytest.importorskip("qdrant_client")
    common = dict(model=str(tiny_model_dir), dtype="float32", device="cpu", progress=False, log=lambda m: None,
                  **CHUNKING)
    path = built["root"] / "ray-qdrant-ix"
    with Index.build(built["docs"], path=path, ray="local", ray_actors=2, backend="qdrant", **common) as index:
        assert index.stats()["backend"] == "qdrant" and index.backend.count() == len(index)
    ids = chunk_ids(built["plain"])
    with Index.load(path) as qdrant_ix, Index.load(built["plain"]) as plain_ix:
        cosine = (qdrant_ix.get_vectors(ids) * plain_ix.get_vectors(ids)).sum(axis=1)
        assert cosine.min() >= 0.999
        own = qdrant_ix.get_vectors(ids[:1])[0]
        assert qdrant_ix.search_by_vector(own, k=1)[0].id == ids[0]
