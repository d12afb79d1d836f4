"""The layer rules of docs/architecture.md, checked by scanning every import (module-level
and inside functions) of the zooql package, plus import-time checks in a subprocess."""
import ast
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
PKG = ROOT / "zooql"


def _module_name(path: Path) -> str:
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts = parts[:-1]
    return ".".join(parts)


MODULES = {_module_name(p): p for p in PKG.rglob("*.py")}


def _imports(path: Path) -> set[str]:
    """Every module named by an import in ``path``; ``from a import b`` names a.b when that
    is a module, else a."""
    out = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            out.update(a.name for a in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                pytest.fail(f"{path}: relative import 'from {'.' * node.level}{node.module or ''}' "
                            f"(use absolute zooql.* imports)")
            for a in node.names:
                full = f"{node.module}.{a.name}"
                out.add(full if full in MODULES else node.module)
    return out


GRAPH = {m: {i for i in _imports(p)} for m, p in MODULES.items()}


def _internal(mod: str) -> set[str]:
    return {i for i in GRAPH[mod] if i == "zooql" or i.startswith("zooql.")}


def _in(mod: str, pkg: str) -> bool:
    return mod == pkg or mod.startswith(pkg + ".")


def _method_of(mod: str) -> str | None:
    parts = mod.split(".")
    if len(parts) >= 3 and parts[:2] == ["zooql", "methods"] and parts[2] != "registry":
        return parts[2]
    return None


def test_lang_imports_only_lark_and_errors():
    stdlib = set(sys.stdlib_module_names) | {"__future__"}
    for mod in MODULES:
        if not _in(mod, "zooql.lang"):
            continue
        for imp in GRAPH[mod]:
            top = imp.split(".")[0]
            ok = top in stdlib or top == "lark" or imp == "zooql.errors" or _in(imp, "zooql.lang")
            assert ok, f"{mod} imports {imp}: zooql.lang may import only lark, the standard library and zooql.errors"


@pytest.mark.parametrize("layer", ["zooql.lang", "zooql.plan", "zooql.core", "zooql.storage", "zooql.runtime"])
def test_lower_layers_do_not_import_methods(layer):
    for mod in MODULES:
        if _in(mod, layer):
            bad = [i for i in _internal(mod) if _in(i, "zooql.methods")]
            assert not bad, f"{mod} imports {bad}: {layer} must not know any method"


def test_nothing_imports_repl():
    for mod in MODULES:
        if _in(mod, "zooql.repl") or mod == "zooql.__main__":
            continue
        bad = [i for i in _internal(mod) if _in(i, "zooql.repl")]
        assert not bad, f"{mod} imports {bad}: only the CLI entry point may import zooql.repl"


def test_repl_imports_only_the_api():
    allowed = ("zooql", "zooql.api", "zooql.errors", "zooql.demo.main")
    for mod in MODULES:
        if _in(mod, "zooql.repl"):
            bad = [i for i in _internal(mod) if not _in(i, "zooql.repl") and i not in allowed]
            assert not bad, f"{mod} imports {bad}: the REPL talks to the engine through zooql.api"


def test_methods_do_not_import_each_other():
    for mod in MODULES:
        me = _method_of(mod)
        if me is None:
            continue
        for imp in _internal(mod):
            other = _method_of(imp)
            assert other in (None, me), f"{mod} imports {imp}: methods must not import each other"


def test_no_import_cycles():
    internal = {m: {i for i in _internal(m) if i in MODULES} for m in MODULES}
    index, low, stack, on, sccs = {}, {}, [], set(), []

    def visit(v):
        index[v] = low[v] = len(index)
        stack.append(v)
        on.add(v)
        for w in internal[v]:
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = []
            while True:
                w = stack.pop()
                on.discard(w)
                comp.append(w)
                if w == v:
                    break
            if len(comp) > 1 or v in internal[v]:
                sccs.append(sorted(comp))

    sys.setrecursionlimit(10000)
    for v in sorted(internal):
        if v not in index:
            visit(v)
    assert not sccs, f"import cycles: {sccs}"


def _loaded_after(code: str) -> set[str]:
    out = subprocess.run([sys.executable, "-c", code + "\nimport sys; print(' '.join(sorted(sys.modules)))"],
                         capture_output=True, text=True, cwd=ROOT, check=True)
    return set(out.stdout.split())


def test_import_lang_is_light():
    mods = _loaded_after("import zooql.lang.parser, zooql.lang.ast")
    for heavy in ("numpy", "duckdb", "torch", "pyarrow"):
        assert heavy not in mods, f"import zooql.lang loads {heavy}"


def test_parsing_every_statement_loads_no_torch():
    mods = _loaded_after(
        "from zooql.methods import registry\n"
        "registry.parse(\"FIND LOGITS RECOGNIZING 'dog' TOP 5; DISCOVER BEST IN TREE t ON d BUDGET 5; "
        "RECOMMEND MODELS FOR DATASET 'x' TOP 3; RANK MODELS FOR TASK t USING CONDUCTANCE; "
        "SELECT MODELS FOR TASK 'p' CLASSES ('a') USING LABELS; SHOW MODELS\")")
    for heavy in ("torch", "duckdb", "numpy"):
        assert heavy not in mods, f"parsing loads {heavy}"


def test_file_and_function_sizes():
    long_files, long_funcs = [], []
    for mod, path in MODULES.items():
        text = path.read_text()
        if text.count("\n") > 600:
            long_files.append(f"{mod} ({text.count(chr(10))} lines)")
        for node in ast.walk(ast.parse(text)):
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
                n = node.end_lineno - node.lineno + 1
                if n > 80:
                    long_funcs.append(f"{mod}.{node.name} ({n} lines)")
    assert not long_files, f"files over 600 lines: {long_files}"
    assert not long_funcs, f"functions over 80 lines: {long_funcs}"
