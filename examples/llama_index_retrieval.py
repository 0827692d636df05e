"""Retrieval with LlamaIndex over a folder of documents, embedded by LLM2Vec (offline, CPU, no LLM).

    python examples/llama_index_retrieval.py                     # examples/docs, default questions
    python examples/llama_index_retrieval.py my-notes/ -q "how do I install it?" -k 5

Files are read and chunked by the toolkit (Markdown headings, PDF pages, ...)
into LlamaIndex ``TextNode``s; ``Settings.embed_model`` is ``LLM2VecEmbedding``
and ``Settings.llm`` is None, so nothing needs a generator model or the network.
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

from llama_index.core import Settings, VectorStoreIndex
from llama_index.core.schema import TextNode

from llm2vec_rag.index.chunk import chunk_document
from llm2vec_rag.index.ingest import walk
from llm2vec_rag.index.readers import read_document
from llm2vec_rag.integrations.llama_index import LLM2VecEmbedding

HERE = Path(__file__).resolve().parent
QUESTIONS = [
    "How do I install llm2vec-rag?",
    "Why does a decoder-only model need bidirectional attention?",
    "What is the query instruction for?",
]


def load_nodes(folder: Path, counter, chunk_tokens: int = 200) -> list[TextNode]:
    """Every readable file under ``folder``, chunked, with where each chunk came from."""
    nodes: list[TextNode] = []
    for cand in walk(folder).files:
        parsed = read_document(cand.path, cand.path.read_bytes())
        for piece in chunk_document(parsed, counter, chunk_tokens=chunk_tokens, overlap=20):
            metadata = {"source": cand.rel, "heading": piece.heading}
            if piece.page is not None:
                metadata["page"] = piece.page
            nodes.append(TextNode(text=piece.text, id_=f"{cand.rel}#{piece.chunk}", metadata=metadata,
                                  excluded_embed_metadata_keys=list(metadata)))  # embed the text alone
    return nodes


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("docs", nargs="?", type=Path, default=HERE / "docs",
                        help="folder to index (default: %(default)s)")
    parser.add_argument("--model", default="smollm2-135m", help="embedded model name, .gguf file or model directory")
    parser.add_argument("-q", "--query", action="append", help="a question (repeatable; default: three examples)")
    parser.add_argument("-k", type=int, default=3, help="passages per question")
    args = parser.parse_args(argv)

    Settings.llm = None  # retrieval only: no generator model
    Settings.embed_model = embed = LLM2VecEmbedding(model_name=args.model)
    nodes = load_nodes(args.docs, embed.client)
    if not nodes:
        print(f"no readable documents under {args.docs}", file=sys.stderr)
        return 1
    index = VectorStoreIndex(nodes)
    print(f"indexed {len(nodes)} chunks from {args.docs} with {embed.model_name} ({embed.dim}-d)")

    retriever = index.as_retriever(similarity_top_k=args.k)
    for question in args.query or QUESTIONS:
        print(f"\nQ: {question}")
        for rank, hit in enumerate(retriever.retrieve(question), 1):
            meta = hit.node.metadata
            where = meta.get("source", "?") + (f" > {meta['heading']}" if meta.get("heading") else "")
            snippet = " ".join(hit.node.get_content().split())[:100]
            print(f"  {rank}. {hit.score:.3f} [{where}] {snippet}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
