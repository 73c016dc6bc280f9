"""The layout's rules, read from the source: no import cycle between the package's modules,
no import of the package's own modules inside a function, and ruff's lint clean."""
import ast
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[1] / "mvcpaper"


def _module_name(path: Path) -> str:
    parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _target(module: str, is_package: bool, node: ast.ImportFrom) -> list[str]:
    """The package modules an ``ImportFrom`` node loads (relative or absolute)."""
    if node.level == 0:
        return [node.module] if node.module and node.module.split(".")[0] == "mvcpaper" else []
    base = module.split(".")
    base = base if is_package else base[:-1]
    base = base[: len(base) - (node.level - 1)]
    target = ".".join(base + ([node.module] if node.module else []))
    names = [f"{target}.{a.name}" for a in node.names]
    submodules = [n for n in names if _exists(n)]
    return submodules or [target]


def _exists(name: str) -> bool:
    rel = Path(*name.split(".")[1:])
    return (PACKAGE / rel).with_suffix(".py").is_file() or (PACKAGE / rel / "__init__.py").is_file()


def _graph():
    edges, inner = {}, []
    for path in PACKAGE.rglob("*.py"):
        module = _module_name(path)
        tree = ast.parse(path.read_text())
        is_package = path.name == "__init__.py"
        edges[module] = set()
        for node in tree.body:
            if isinstance(node, ast.ImportFrom):
                edges[module] |= set(_target(module, is_package, node))
        for node in ast.walk(tree):
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
                for sub in ast.walk(node):
                    if isinstance(sub, ast.ImportFrom) and (sub.level > 0 or (sub.module or "").startswith("mvcpaper")):
                        inner.append(f"{module}.{node.name}: from {'.' * sub.level}{sub.module or ''} import ...")
    return edges, inner


def test_no_import_cycle():
    edges, _ = _graph()
    state, stack = {}, []

    def visit(m):
        state[m] = "open"
        stack.append(m)
        for n in sorted(edges.get(m, ())):
            if state.get(n) == "open":
                pytest.fail("import cycle: " + " -> ".join(stack[stack.index(n):] + [n]))
            if n not in state:
                visit(n)
        stack.pop()
        state[m] = "done"

    for m in sorted(edges):
        if m not in state:
            visit(m)


def test_no_package_import_inside_a_function():
    _, inner = _graph()
    assert not inner, "move these imports to the module's top:\n" + "\n".join(inner)


def test_ruff_is_clean():
    ruff = shutil.which("ruff", path=str(Path(sys.executable).parent)) or shutil.which("ruff")
    if ruff is None:
        pytest.skip("ruff is not installed (pip install -e '.[test]')")
    out = subprocess.run([ruff, "check", str(PACKAGE.parent)], capture_output=True, text=True)
    assert out.returncode == 0, out.stdout + out.stderr
