"""Dependencies point inward: the core imports neither click nor langchain nor llama_index nor a web framework."""
from __future__ import annotations

import subprocess
import sys

BLOCK = """
import sys
class Blocker:
    def find_spec(self, name, path=None, target=None):
        if name.split('.')[0] in {'click', 'langchain', 'langchain_core', 'llama_index', 'fastapi', 'starlette', 'uvicorn'}:
            raise ImportError('blocked: ' + name)
        return None
sys.meta_path.insert(0, Blocker())
"""


def test_core_imports_without_shell_or_framework_packages():
    code = BLOCK + (
        "import llm2vec_rag, llm2vec_rag.encoder, llm2vec_rag.resolve, llm2vec_rag.saving, "
        "llm2vec_rag.bidirectional, llm2vec_rag.adapters, llm2vec_rag.pooling, llm2vec_rag.instructions\n"
        "import pkgutil, importlib\n"
        "for m in pkgutil.walk_packages(llm2vec_rag.__path__, 'llm2vec_rag.'):\n"
        "    importlib.import_module(m.name)\n"
        "print('ok')"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr[-2000:]
    assert result.stdout.strip().endswith("ok")


def test_package_import_is_lazy():
    code = "import sys, llm2vec_rag; print('torch' in sys.modules, 'transformers' in sys.modules)"
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert result.stdout.split() == ["False", "False"]


def test_cli_and_integrations_install_under_the_package_namespace():
    import llm2vec_rag.cli
    import llm2vec_rag.integrations

    code = "import importlib.util as u; print(u.find_spec('cli') is None or 'site-packages' not in str(u.find_spec('cli').origin))"
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60, cwd="/")
    assert result.stdout.strip() == "True"
    assert llm2vec_rag.cli.__name__ == "llm2vec_rag.cli"
