"""Retrieval with LangChain over a folder of documents, embedded by LLM2Vec (offline, CPU).

    python examples/langchain_retrieval.py                       # examples/docs, default questions
    python examples/langchain_retrieval.py my-notes/ -q "how do I install it?" -k 5
    python examples/langchain_retrieval.py --persist kb/         # keep the index; reruns reopen it

Files are read and chunked by the toolkit (Markdown headings, PDF pages, ...),
turned into LangChain ``Document``s, and stored in ``LLM2VecVectorStore``
(FAISS + SQLite). Questions go through a standard LangChain retriever.
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

from langchain_core.documents import Document

from llm2vec_rag.index.chunk import chunk_document
from llm2vec_rag.index.ingest import walk
from llm2vec_rag.index.readers import read_document
from llm2vec_rag.integrations.langchain import LLM2VecEmbeddings, LLM2VecVectorStore

HERE = Path(__file__).resolve().parent
QUESTIONS = [
    "How do I install llm2vec-rag?",
    "Why does a decoder-only model need bidirectional attention?",
    "What is the query instruction for?",
]


def load_documents(folder: Path, counter, chunk_tokens: int = 200) -> list[Document]:
    """Every readable file under ``folder``, chunked, with where each chunk came from."""
    docs: list[Document] = []
    for cand in walk(folder).files:
        parsed = read_document(cand.path, cand.path.read_bytes())
        for piece in chunk_document(parsed, counter, chunk_tokens=chunk_tokens, overlap=20):
            metadata = {"source": cand.rel, "chunk": piece.chunk, "heading": piece.heading}
            if piece.page is not None:
                metadata["page"] = piece.page
            docs.append(Document(page_content=piece.text, metadata=metadata, id=f"{cand.rel}#{piece.chunk}"))
    return docs


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("docs", nargs="?", type=Path, default=HERE / "docs",
                        help="folder to index (default: %(default)s)")
    parser.add_argument("--model", default="smollm2-135m", help="embedded model name, .gguf file or model directory")
    parser.add_argument("-q", "--query", action="append", help="a question (repeatable; default: three examples)")
    parser.add_argument("-k", type=int, default=3, help="passages per question")
    parser.add_argument("--persist", type=Path, help="keep the vector store in this directory (reopened if present)")
    args = parser.parse_args(argv)

    embeddings = LLM2VecEmbeddings(model=args.model)
    if args.persist and (args.persist / "meta.sqlite").exists():
        store = LLM2VecVectorStore.load(args.persist, embeddings)
        print(f"reopened {len(store)} chunks from {args.persist}")
    else:
        docs = load_documents(args.docs, embeddings.client)
        if not docs:
            print(f"no readable documents under {args.docs}", file=sys.stderr)
            return 1
        store = LLM2VecVectorStore.from_documents(docs, embeddings, path=args.persist)
        print(f"indexed {len(docs)} chunks from {args.docs} with {embeddings.model} ({embeddings.dim}-d)")

    with store:
        retriever = store.as_retriever(search_kwargs={"k": args.k})
        for question in args.query or QUESTIONS:
            print(f"\nQ: {question}")
            for rank, doc in enumerate(retriever.invoke(question), 1):
                snippet = " ".join(doc.page_content.split())[:100]
                heading = doc.metadata.get("heading")
                where = doc.metadata.get("source", "?") + (f" > {heading}" if heading else "")
                print(f"  {rank}. [{where}] {snippet}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
