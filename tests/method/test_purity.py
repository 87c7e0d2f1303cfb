"""sparta_hpc.method is a pure core: standard library only, no file system, no wall clock, no printing."""

import ast
import sys
from pathlib import Path

import sparta_hpc.method

METHOD_DIR = Path(sparta_hpc.method.__file__).parent
FORBIDDEN_MODULES = {"os", "io", "pathlib", "shutil", "tempfile", "subprocess", "socket", "time", "datetime"}
FORBIDDEN_CALLS = {"open", "print", "input", "hash", "id"}


def _imports(tree: ast.AST) -> list[str]:
    names = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names += [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            names.append("." if node.level else node.module or "")
    return names


def test_method_imports_only_the_standard_library() -> None:
    files = sorted(METHOD_DIR.glob("*.py"))
    assert {f.name for f in files} >= {
        "types.py",
        "settings.py",
        "matchmaking.py",
        "judging.py",
        "ratings.py",
    }
    for path in files:
        for name in _imports(ast.parse(path.read_text(), str(path))):
            top = name.split(".")[0]
            ok = name == "." or name.startswith("sparta_hpc.method") or top in sys.stdlib_module_names
            assert ok, f"{path.name} imports {name!r}: sparta_hpc.method may import only the standard library"
            assert top not in FORBIDDEN_MODULES, (
                f"{path.name} imports {name!r}: no I/O or clock in the method"
            )


def test_method_calls_no_io_or_hash_builtins() -> None:
    for path in sorted(METHOD_DIR.glob("*.py")):
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            if isinstance(node, ast.Call) and isinstance(node.func, ast.Name):
                assert node.func.id not in FORBIDDEN_CALLS, (
                    f"{path.name}:{node.lineno} calls {node.func.id}()"
                )


def test_method_size_budget() -> None:
    sizes = {p.name: len(p.read_text().splitlines()) for p in METHOD_DIR.glob("*.py")}
    assert sum(sizes.values()) < 800, sizes
    assert max(sizes.values()) <= 400, sizes
    for path in METHOD_DIR.glob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.FunctionDef):
                assert node.end_lineno - node.lineno < 60, f"{path.name}: {node.name} is over 60 lines"
