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
from sparta_hpc.store.rundir import STAGES, RunDir
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


RUN_DIRECTORY_MD = docgen.ROOT / "docs" / "run-directory.md"
SAMPLE_ARGS = {
    "t": 0,
    "shard": 1,
    "player": "<player>",
    "label": "<label>",
    "name": "<name>",
    "split": "val",
    "task": None,  # an eval.tasks task adds a <task> folder under the player (docs/formats.md)
    "attempt": "<attempt>",
    "unit": "<unit>",
}
"""Arguments of ``RunDir``'s methods: the doc's placeholders, or examples it draws (numbers count as N)."""
TREE_LINE = re.compile(r"^((?:[│ ]   )*)[├└]── ([^\s,]+(?:, [^\s,]+)*)")
"""A node of the drawn tree: indentation (4 characters a level), then its name(s) (``a.png, b.png``)."""


def canonical(path: str) -> str:
    """``iter_000/judge/shard_00001.jsonl`` -> ``iter_N/judge/shard_N.jsonl``."""
    return re.sub(r"\d+", "N", path)


def drawn_paths(text: str) -> set[str]:
    """Every path of the tree drawn under ``RUN_DIR/``, relative, canonical; ``<stage>`` as each stage."""
    tree = text.split("```\nRUN_DIR/\n", 1)[1].split("```", 1)[0]
    parents: list[str] = []
    paths = set()
    for line in tree.splitlines():
        node = TREE_LINE.match(line)
        if node is None:  # a description's continuation line
            continue
        depth = len(node.group(1)) // 4
        names = [n.rstrip("/") for n in node.group(2).split(", ")]
        parents = parents[:depth]
        paths |= {"/".join([*parents, n]) for n in names}
        parents.append(names[0])
    return {canonical(p.replace("<stage>", s)) for p in paths for s in STAGES}


def rundir_paths(cls: type[RunDir] = RunDir) -> dict[str, list[str]]:
    """``{attribute: [relative canonical path]}`` of every path ``cls`` builds; a method with a ``stage``
    argument gives one path per stage (it is drawn if one of them is)."""
    run = cls("/run-root")
    members = {k: v for klass in reversed(cls.__mro__) for k, v in vars(klass).items()}
    paths = {}
    for attr, value in members.items():
        if attr.startswith("_") or attr == "relative":
            continue
        if isinstance(value, property):
            built = [getattr(run, attr)]
        elif callable(value):
            params = list(inspect.signature(value).parameters)[1:]
            stages = STAGES if "stage" in params else (None,)
            args = [[s if p == "stage" else SAMPLE_ARGS[p] for p in params] for s in stages]
            built = [getattr(run, attr)(*a) for a in args]
        else:
            continue
        paths[attr] = [canonical(str(p.relative_to(run.root))) for p in built]
    return paths


def undrawn(text: str, cls: type[RunDir] = RunDir) -> list[str]:
    drawn = drawn_paths(text)
    return [f"{attr}: {ps[0]}" for attr, ps in rundir_paths(cls).items() if not drawn.intersection(ps)]


def test_run_directory_doc_draws_every_path() -> None:
    text = RUN_DIRECTORY_MD.read_text(encoding="utf-8")
    assert {"state_file", "tiny_base", "shard", "eval_records", "jobs"} <= set(rundir_paths())
    assert not undrawn(text), f"draw these RunDir paths in {RUN_DIRECTORY_MD}: {undrawn(text)}"


def test_run_directory_check_catches_an_undrawn_path() -> None:
    class Extended(RunDir):
        def rate_extra(self, t: int) -> Path:
            return self.stage(t, "rate") / "extra.json"

    text = RUN_DIRECTORY_MD.read_text(encoding="utf-8")
    assert undrawn(text, Extended) == ["rate_extra: iter_N/rate/extra.json"]
    work = next(line for line in text.splitlines() if "── work/" in line)
    assert undrawn(text.replace(work, ""), RunDir) == [
        "train_work: iter_N/train/<player>/work",
        "train_attempt: iter_N/train/<player>/work/<attempt>",
    ]
    assert drawn_paths("```\nRUN_DIR/\n└── a/\n    ├── b.png, c.png   two files\n    └── d/e.json\n```") == {
        "a",
        "a/b.png",
        "a/c.png",
        "a/d/e.json",
    }


def test_relative_links_in_the_docs_resolve() -> None:
    files = [docgen.ROOT / "README.md", *sorted((docgen.ROOT / "docs").glob("*.md"))]
    broken = [
        f"{f.name}: {target}"
        for f in files
        for target in re.findall(r"\]\(([^)#:]+)(?:#[^)]*)?\)", f.read_text(encoding="utf-8"))
        if not (f.parent / target).exists()
    ]
    assert not broken
