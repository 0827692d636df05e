"""The shape stays: the core imports neither click nor langchain nor llama_index nor a web framework; no import
circle, no private name used across modules, no function over 80 lines (allowlists only shrink)."""
from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

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


# ---- static shape checks (ast only, nothing imported) --------------------------------------------
# Each check carries an allowlist of today's violations. An entry that no longer occurs fails the
# test too, so the lists only ever shrink: fix a violation, then delete its line.

REPO = Path(__file__).resolve().parent.parent
SOURCE_DIRS = {"llm2vec_rag": "llm2vec_rag", "integrations": "llm2vec_rag.integrations", "cli": "llm2vec_rag.cli"}
MAX_FUNCTION_LINES = 80

ALLOWED_CIRCLES: set[frozenset[str]] = set()
ALLOWED_PRIVATE_USES: set[str] = set()
ALLOWED_LONG_FUNCTIONS: set[str] = {
    "llm2vec_rag.encoder:LLM2Vec.from_pretrained",
    "llm2vec_rag.index.ingest:walk",
    "llm2vec_rag.training.trainer:Trainer.train",
}


def _modules() -> dict[str, Path]:
    found = {}
    for folder, prefix in SOURCE_DIRS.items():
        for path in sorted((REPO / folder).rglob("*.py")):
            parts = list(path.relative_to(REPO / folder).with_suffix("").parts)
            if parts[-1] == "__init__":
                parts = parts[:-1]
            found[".".join([prefix, *parts])] = path
    return found


MODULES = _modules()
TREES = {name: ast.parse(path.read_text(), str(path)) for name, path in MODULES.items()}


def _is_private(name: str) -> bool:
    return name.startswith("_") and not name.startswith("__")


def _owner(dotted: str) -> str | None:
    """The longest package module that a dotted name lies in."""
    while dotted:
        if dotted in MODULES:
            return dotted
        dotted = dotted.rpartition(".")[0]
    return None


def _absolute(module: str, level: int, target: str | None) -> str:
    if not level:
        return target or ""
    parts = module.split(".")
    if MODULES[module].name != "__init__.py":
        parts = parts[:-1]
    parts = parts[: len(parts) - (level - 1)]
    return ".".join(parts + ([target] if target else []))


def _under_type_checking(node: ast.If) -> bool:
    test = node.test
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING")


class _Imports(ast.NodeVisitor):
    """Own-package imports of one module, at module and function level; `TYPE_CHECKING` blocks skipped."""

    def __init__(self, module: str):
        self.module = module
        self.targets: set[str] = set()
        self.private: set[str] = set()
        self.aliases: dict[str, str] = {}

    def visit_If(self, node: ast.If) -> None:
        if _under_type_checking(node):
            for child in node.orelse:
                self.visit(child)
        else:
            self.generic_visit(node)

    def _import(self, dotted: str, alias: str | None) -> None:
        target = _owner(dotted)
        if target and target != self.module:
            self.targets.add(target)
            if alias:
                self.aliases[alias] = target

    def visit_Import(self, node: ast.Import) -> None:
        for name in node.names:
            self._import(name.name, name.asname)

    def visit_ImportFrom(self, node: ast.ImportFrom) -> None:
        base = _absolute(self.module, node.level, node.module)
        if not base.startswith("llm2vec_rag"):
            return
        for name in node.names:
            if f"{base}.{name.name}" in MODULES:
                self._import(f"{base}.{name.name}", name.asname or name.name)
                continue
            target = _owner(base)
            self._import(base, None)
            if target and target != self.module and _is_private(name.name):
                self.private.add(f"{self.module} -> {target}.{name.name}")

    def visit_Attribute(self, node: ast.Attribute) -> None:
        value = node.value
        if isinstance(value, ast.Name) and value.id in self.aliases and _is_private(node.attr):
            self.private.add(f"{self.module} -> {self.aliases[value.id]}.{node.attr}")
        self.generic_visit(node)


IMPORTS = {}
for _name, _tree in TREES.items():
    IMPORTS[_name] = _Imports(_name)
    IMPORTS[_name].visit(_tree)


def _circles(graph: dict[str, set[str]]) -> set[frozenset[str]]:
    """Strongly connected components with more than one module (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: set[frozenset[str]] = set()

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        for nxt in sorted(graph.get(node, ())):
            if nxt not in index:
                visit(nxt)
                low[node] = min(low[node], low[nxt])
            elif nxt in on_stack:
                low[node] = min(low[node], index[nxt])
        if low[node] == index[node]:
            component = set()
            while True:
                member = stack.pop()
                on_stack.discard(member)
                component.add(member)
                if member == node:
                    break
            if len(component) > 1:
                found.add(frozenset(component))

    for node in sorted(graph):
        if node not in index:
            visit(node)
    return found


def _defined_private_names(tree: ast.AST) -> set[str]:
    """`_names` a module defines: functions, classes, assignments (module level or `self._x = ...`)."""
    names = set()
    for node in ast.walk(tree):
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
            names.add(node.name)
        elif isinstance(node, ast.Name) and isinstance(node.ctx, ast.Store):
            names.add(node.id)
        elif isinstance(node, ast.Attribute) and isinstance(node.ctx, ast.Store):
            names.add(node.attr)
        elif isinstance(node, ast.arg):
            names.add(node.arg)
    return {name for name in names if _is_private(name)}


def _foreign_private_attributes() -> set[str]:
    """`obj._name` where `obj` is not self/cls and `_name` is defined by another package module, not this one."""
    defined = {name: _defined_private_names(tree) for name, tree in TREES.items()}
    anywhere = set().union(*defined.values())
    uses = set()
    for module, tree in TREES.items():
        aliases = IMPORTS[module].aliases
        for node in ast.walk(tree):
            if not (isinstance(node, ast.Attribute) and _is_private(node.attr)):
                continue
            if isinstance(node.value, ast.Name) and (node.value.id in ("self", "cls") or node.value.id in aliases):
                continue
            if node.attr in anywhere and node.attr not in defined[module]:
                uses.add(f"{module} -> .{node.attr}")
    return uses


def _long_functions() -> dict[str, int]:
    found = {}

    def walk(node: ast.AST, module: str, prefix: str) -> None:
        for child in ast.iter_child_nodes(node):
            if isinstance(child, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
                qualname = prefix + child.name
                if not isinstance(child, ast.ClassDef):
                    length = child.end_lineno - child.lineno + 1
                    if length > MAX_FUNCTION_LINES:
                        found[f"{module}:{qualname}"] = length
                walk(child, module, qualname + ".")
            else:
                walk(child, module, prefix)

    for module, tree in TREES.items():
        walk(tree, module, "")
    return found


def _compare(found: set, allowed: set, what: str) -> None:
    new = sorted(map(str, found - allowed))
    fixed = sorted(map(str, allowed - found))
    assert not new, f"new {what} (fix it; the allowlist only shrinks): {new}"
    assert not fixed, f"{what} fixed, delete from the allowlist: {fixed}"


def test_no_import_circles_beyond_the_allowlist():
    graph = {module: imports.targets for module, imports in IMPORTS.items()}
    _compare({frozenset(c) for c in _circles(graph)}, ALLOWED_CIRCLES, "import circle")


def test_no_private_names_used_across_modules_beyond_the_allowlist():
    found = set().union(*(imports.private for imports in IMPORTS.values())) | _foreign_private_attributes()
    # a private module (integrations/_shared.py) is fine inside its own package
    _compare(found, ALLOWED_PRIVATE_USES, "cross-module private name")


def test_no_function_longer_than_80_lines_beyond_the_allowlist():
    _compare(set(_long_functions()), ALLOWED_LONG_FUNCTIONS, f"function over {MAX_FUNCTION_LINES} lines")
