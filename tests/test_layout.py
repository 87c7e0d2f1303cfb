"""The architecture on disk: which group of ``sparta_hpc`` may import which, one writer of the run state, and
size budgets. Every import counts, also those inside functions and under ``TYPE_CHECKING``."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[1] / "sparta_hpc"

ALLOWED: dict[str, set[str]] = {
    "cli": {"run", "report", "tools", "tasks", "config", "cluster.squeue_states", "errors"},
    "run": {"jobs", "cluster", "store", "config", "tasks", "engines", "method", "files", "errors"},
    "jobs": {"config", "store", "engines", "training", "tasks", "method", "files", "errors"},
    "report": {"config", "store", "tasks", "method", "files", "errors", "processes"},
    "tools": {"config", "store", "cluster", "tasks", "engines", "method", "files", "errors"},
    "config": {
        "cluster.resources",
        "engines.base",
        "engines.sources",
        "tasks",
        "training",
        "method",
        "errors",
    },
    "tasks": {"engines.base", "method", "files", "errors"},
    "store": {"method", "files", "errors", "processes"},
    "cluster": {"files", "errors", "processes"},
    "engines": {"method", "files", "errors"},
    "training": {"method", "files", "errors"},
    "method": set(),
    "files": {"errors"},
    "errors": set(),
    "processes": set(),
    "_moved": set(),
}
"""``{group: groups (or modules of a group) it may import}``; a group may always import itself. A group is a
subpackage of ``sparta_hpc`` or one of its top-level modules."""

STATE_WRITERS = "run"
"""The one group that may save the run state (``store.state.save_state``)."""

MAX_MODULE_LINES = 400


def module_name(path: Path, package: Path = PACKAGE) -> str:
    parts = path.relative_to(package.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def group_of(module: str) -> str:
    return module.split(".")[1] if "." in module else ""


def imported_modules(path: Path) -> list[tuple[int, str]]:
    """``(line, module)`` of every sparta_hpc import; ``from sparta_hpc.x import y`` gives ``x.y``, which is
    the module ``x.y`` or the name ``y`` of module ``x``."""
    tree = ast.parse(path.read_text(encoding="utf-8"))
    out = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            out += [(node.lineno, a.name) for a in node.names if a.name.startswith("sparta_hpc")]
        elif isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("sparta_hpc"):
            out += [(node.lineno, f"{node.module}.{a.name}") for a in node.names]
    return out


def allowed(importer: str, imported: str) -> bool:
    """Whether ``imported`` (a module, or a module's name) may be imported by module ``importer``."""
    src, dst = group_of(importer), imported.removeprefix("sparta_hpc").lstrip(".")
    if dst.split(".")[0] in ("", src):
        return True
    return any(dst == rule or dst.startswith(rule + ".") for rule in ALLOWED[src])


def violations(package: Path = PACKAGE) -> list[str]:
    found = []
    for path in sorted(package.rglob("*.py")):
        importer = module_name(path, package)
        if importer == "sparta_hpc":
            continue
        group = group_of(importer)
        if group not in ALLOWED:
            found.append(f"{path}: module of no known group {group!r}; add it to ALLOWED")
            continue
        for line, imported in imported_modules(path):
            if not allowed(importer, imported):
                found.append(f"{path}:{line}: {group} may not import {imported}")
    return found


def test_each_group_imports_only_the_groups_below_it() -> None:
    assert violations() == []


@pytest.mark.parametrize(
    ("module", "line", "expected"),
    [
        ("report/leak.py", "from sparta_hpc.run import iteration", "report may not import sparta_hpc.run"),
        ("report/leak.py", "from sparta_hpc.run.launcher import start", "report may not import"),
        ("cluster/leak.py", "from sparta_hpc.jobs import generate_shard", "cluster may not import"),
        ("cluster/leak.py", "from sparta_hpc.store.rundir import STAGES", "cluster may not import"),
        ("method/leak.py", "import sparta_hpc.files", "method may not import sparta_hpc.files"),
        ("store/leak.py", "from sparta_hpc.config import SpartaConfig", "store may not import"),
        ("tasks/leak.py", "from sparta_hpc.config import load_config", "tasks may not import"),
        ("engines/leak.py", "    from sparta_hpc.config import TINY", "engines may not import"),
    ],
)
def test_the_contract_check_catches_a_forbidden_import(
    tmp_path: Path, module: str, line: str, expected: str
) -> None:
    """The checker run on a copy of the package with one forbidden import added (also inside a function)."""
    import shutil

    copy = tmp_path / "sparta_hpc"
    shutil.copytree(PACKAGE, copy, ignore=shutil.ignore_patterns("__pycache__"))
    body = f"def late() -> None:\n{line}\n" if line.startswith(" ") else f"{line}\n"
    (copy / module).write_text(body, encoding="utf-8")
    found = violations(copy)
    assert len(found) == 1 and expected in found[0], found


def test_only_the_launcher_writes_the_run_state() -> None:
    writers = sorted(
        module_name(path)
        for path in PACKAGE.rglob("*.py")
        if any(m == "sparta_hpc.store.state.save_state" for _, m in imported_modules(path))
    )
    assert writers and all(group_of(m) == STATE_WRITERS for m in writers), writers


def test_no_module_is_over_budget() -> None:
    sizes = {module_name(p): len(p.read_text(encoding="utf-8").splitlines()) for p in PACKAGE.rglob("*.py")}
    assert {m: n for m, n in sizes.items() if n > MAX_MODULE_LINES} == {}
