"""One base error for everything the toolkit reports to users.

The CLI turns any ``LLM2VecError`` into a one-line message with a non-zero
exit; other exceptions are bugs and keep their traceback.
"""
from __future__ import annotations


class LLM2VecError(Exception):
    """Base class: a problem the user can fix (bad input, missing model, ...)."""


class ModelNotFoundError(LLM2VecError):
    """A model name, path or Hub id that cannot be resolved to local weights."""


class ModelLoadError(LLM2VecError):
    """Weights, a GGUF file or an adapter that exist but cannot be read."""


class UnsupportedModelError(LLM2VecError):
    """A model family for which bidirectional attention is not known to work."""


class BidirectionalCheckError(LLM2VecError):
    """The self-check found the model still causal (or still bidirectional)."""


class IndexNotFoundError(LLM2VecError):
    """No index at the given directory (run ``llm2vec-rag index FOLDER`` first)."""


class IndexFormatError(LLM2VecError):
    """An index directory that is corrupt, or written by a newer llm2vec-rag."""


class IndexLockedError(LLM2VecError):
    """Another process is writing to the same index."""


class IndexModelMismatchError(LLM2VecError):
    """An index opened with a different model (or dimension) than the one that built it."""


class IndexReadOnlyError(LLM2VecError):
    """A write to an index whose files, folder or file system are read-only (searching it works)."""


class IndexWriteError(LLM2VecError):
    """A write the device refused (a full disk); the unfinished change was rolled back."""
