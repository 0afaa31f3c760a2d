"""The house rules a refactor must keep: no import circles in jaxtrain, and a core that knows
no system (systems use the core; what the core needs from one is declared on `task.System`)."""

import ast
import importlib
import os
import re

from jaxtrain.task import system_names

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
PACKAGE = os.path.join(ROOT, "jaxtrain")


def _read(path: str) -> str:
    with open(path) as f:
        return f.read()


def _modules() -> dict[str, str]:
    """Every jaxtrain module name -> its file."""
    out = {}
    for directory, _, names in os.walk(PACKAGE):
        for name in names:
            if name.endswith(".py"):
                path = os.path.join(directory, name)
                module = os.path.relpath(path[:-3], ROOT).replace(os.sep, ".")
                out[module.removesuffix(".__init__")] = path
    return out


def _imports(module: str, path: str, modules: dict[str, str]) -> set[str]:
    """The jaxtrain modules `module` imports, at the top or inside a function."""
    package = module if path.endswith("__init__.py") else module.rpartition(".")[0]
    found = set()
    for node in ast.walk(ast.parse(_read(path))):
        if isinstance(node, ast.Import):
            found |= {a.name for a in node.names}
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                parent = package.rsplit(".", node.level - 1)[0] if node.level > 1 else package
                base = f"{parent}.{base}" if base else parent
            for alias in node.names:  # `from jaxtrain import files` imports a module
                found.add(f"{base}.{alias.name}" if f"{base}.{alias.name}" in modules else base)
    return {m for m in found if m in modules and m != module}


def _cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components of more than one module (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    out = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        for w in graph[v]:
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while True:
                w = stack.pop()
                component.append(w)
                if w == v:
                    break
            if len(component) > 1:
                out.append(sorted(component))

    for v in graph:
        if v not in index:
            visit(v)
    return out


def test_no_import_circles():
    modules = _modules()
    graph = {m: _imports(m, p, modules) for m, p in modules.items()}
    assert _cycles(graph) == []


def test_the_cycle_finder_finds_a_circle():
    assert _cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]


def _system_words() -> set[str]:
    """System names, and the headline metrics that belong to one system alone."""
    heads = {name: set(importlib.import_module(f"jaxtrain.tasks.{name}.task").HEADLINE)
             for name in system_names()}
    own = {m for name, h in heads.items() for m in h
           if not any(m in other for n, other in heads.items() if n != name)}
    generic = set(re.findall(r"\w+", _read(os.path.join(PACKAGE, "metrics.py"))))
    generic |= {part for w in generic for part in w.split("_")}
    return set(heads) | (own - generic)


def _code_words(path: str) -> set[str]:
    """Identifiers, attribute names and the words of string constants, docstrings left out
    (a docstring may give a system as an example; code may not depend on one)."""
    tree = ast.parse(_read(path))
    docstrings = {id(n.body[0].value) for n in ast.walk(tree)
                  if isinstance(n, ast.Module | ast.ClassDef | ast.FunctionDef |
                                ast.AsyncFunctionDef)
                  and n.body and isinstance(n.body[0], ast.Expr)
                  and isinstance(n.body[0].value, ast.Constant)}
    words = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Constant) and isinstance(node.value, str):
            if id(node) not in docstrings:
                words |= set(re.findall(r"[A-Za-z0-9_]+", node.value))
        elif isinstance(node, ast.Name):
            words.add(node.id)
        elif isinstance(node, ast.Attribute):
            words.add(node.attr)
        elif isinstance(node, ast.FunctionDef | ast.ClassDef | ast.arg):
            words.add(node.name if hasattr(node, "name") else node.arg)
    return words | {part for w in set(words) for part in w.split("_")}


def _core_files() -> list[str]:
    """The core: jaxtrain/*.py, data/ and report/ (models/ holds architectures by kind)."""
    return sorted(os.path.join(d, n) for d in (PACKAGE, *(os.path.join(PACKAGE, sub)
                                                          for sub in ("data", "report")))
                  for n in os.listdir(d) if n.endswith(".py"))


def test_no_core_module_names_a_system_or_its_metrics():
    words = _system_words()
    assert {"fire", "das", "debris_f1", "file_accuracy"} <= words
    named = {os.path.relpath(p, ROOT): sorted(_code_words(p) & words) for p in _core_files()}
    assert {p: w for p, w in named.items() if w} == {}


def test_no_core_module_imports_a_system():
    modules = _modules()
    core = {m for m, p in modules.items() if p in _core_files()}
    imports = {m: sorted(d for d in _imports(m, modules[m], modules)
                         if d.startswith("jaxtrain.tasks.")) for m in core}
    assert {m: d for m, d in imports.items() if d} == {}


def test_the_word_check_sees_code_not_docstrings(tmp_path):
    path = tmp_path / "m.py"
    path.write_text('"""About fire."""\n\ndef f():\n    """fire too."""\n'
                    '    return results["debris_f1"]\n')
    assert "debris_f1" in _code_words(str(path)) and "fire" not in _code_words(str(path))
