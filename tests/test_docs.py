"""The configuration reference and configs/default.yaml are generated from the schema and kept current."""

from __future__ import annotations

import importlib.util
import inspect
import re
import sys
import textwrap
from pathlib import Path

import pytest

from sparta_hpc.config import load_config, to_yaml
from sparta_hpc.store.rundir import RunDir
from sparta_hpc.tools import docgen


def test_every_schema_key_has_a_docstring() -> None:
    assert docgen.missing_docs() == [], (
        "document each key with an attribute docstring (a string literal right under the field), "
        f"then run `{docgen.COMMAND}`"
    )


@pytest.mark.parametrize("path", [docgen.CONFIGURATION_MD, docgen.DEFAULT_YAML], ids=lambda p: p.name)
def test_generated_file_is_up_to_date(path: Path) -> None:
    expected = docgen.generated_files()[path]
    assert path.exists(), f"{path} is missing: run `{docgen.COMMAND}`"
    assert path.read_text(encoding="utf-8") == expected, f"{path} is out of date: run `{docgen.COMMAND}`"


def test_reference_lists_every_key_of_the_schema() -> None:
    text = docgen.CONFIGURATION_MD.read_text(encoding="utf-8")
    for key in docgen.schema_keys():
        assert f"| `{key.key}` |" in text


def test_default_yaml_is_the_resolved_default_config(tmp_path: Path) -> None:
    models = ["models=[{name: a, base: tiny}, {name: b, base: tiny}, {name: c, base: tiny}]", "plan.k=2"]
    empty = tmp_path / "empty.yaml"
    empty.write_text("run: {}\n")
    assert to_yaml(load_config(docgen.DEFAULT_YAML, models)) == to_yaml(load_config(empty, models))


def test_an_undocumented_key_is_caught(tmp_path: Path) -> None:
    source = textwrap.dedent(
        '''
        from __future__ import annotations
        from dataclasses import dataclass, field

        @dataclass
        class Section:
            """A section."""

            documented: int = 1
            """Has a docstring."""
            added: int = 2

        @dataclass
        class Root:
            section: Section = field(default_factory=Section)
        '''
    )
    (tmp_path / "fake_schema.py").write_text(source)
    spec = importlib.util.spec_from_file_location("fake_schema", tmp_path / "fake_schema.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules["fake_schema"] = module
    try:
        spec.loader.exec_module(module)
        missing = docgen.missing_docs(module.Root)
        keys = {k.key: k for k in docgen.schema_keys(module.Root)}
    finally:
        del sys.modules["fake_schema"]
    assert missing == ["section.added"]
    assert keys["section.documented"].doc == "Has a docstring."
    assert keys["section.added"].default == "2"


SAMPLE_ARGS = {"t": 0, "stage": "judge", "shard": 1, "player": "PLAYER", "label": "initial", "split": "val"}
SAMPLE_ARGS["name"] = "NAME"


def rundir_paths() -> dict[str, Path]:
    """Every path ``RunDir`` names, built with sample arguments."""
    run = RunDir("/run-root")
    paths = {}
    for attr, value in vars(RunDir).items():
        if attr.startswith("_") or attr == "relative":
            continue
        if isinstance(value, property):
            paths[attr] = getattr(run, attr)
        elif callable(value):
            params = list(inspect.signature(value).parameters)[1:]
            paths[attr] = getattr(run, attr)(*(SAMPLE_ARGS[p] for p in params))
    return paths


def test_run_directory_doc_draws_every_path() -> None:
    text = (docgen.ROOT / "docs" / "run-directory.md").read_text(encoding="utf-8")
    placeholders = {str(v) for v in SAMPLE_ARGS.values()}
    missing = []
    for attr, path in rundir_paths().items():
        for part in path.relative_to("/run-root").parts:
            pattern = re.sub(r"\d+", r"\\d+", re.escape(part))
            if part not in placeholders and not re.search(pattern, text):
                missing.append(f"{attr}: {part}")
    assert not missing, f"docs/run-directory.md does not draw: {missing}"


def test_relative_links_in_the_docs_resolve() -> None:
    files = [docgen.ROOT / "README.md", *sorted((docgen.ROOT / "docs").glob("*.md"))]
    broken = [
        f"{f.name}: {target}"
        for f in files
        for target in re.findall(r"\]\(([^)#:]+)(?:#[^)]*)?\)", f.read_text(encoding="utf-8"))
        if not (f.parent / target).exists()
    ]
    assert not broken
