"""The ``llm2vec-rag`` command line: a thin shell over the public API."""
