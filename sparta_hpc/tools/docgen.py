"""Generate docs/configuration.md and configs/default.yaml from the config schema.

Every key of ``SpartaConfig`` is documented by the attribute docstring under its field (read with ``ast``
from the source); ``tests/test_docs.py`` fails when a key has none or a generated file is out of date.
Run ``python -m sparta_hpc.tools.docgen`` after changing the schema (``--check`` only compares).
"""

from __future__ import annotations

import argparse
import ast
import dataclasses
import inspect
import sys
import textwrap
import types
import typing
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from omegaconf import OmegaConf

from sparta_hpc.config import CONFIG_DIR, SpartaConfig
from sparta_hpc.method.settings import PROFILES

ROOT = CONFIG_DIR.parent
CONFIGURATION_MD = ROOT / "docs" / "configuration.md"
DEFAULT_YAML = CONFIG_DIR / "default.yaml"
COMMAND = "python -m sparta_hpc.tools.docgen"


@dataclass(frozen=True, kw_only=True)
class KeyDoc:
    """One documented key: dotted name (``models[].name`` inside list items), type, default, docstring."""

    key: str
    type: str
    default: str
    doc: str


def class_docs(cls: type) -> tuple[str, dict[str, str], dict[str, str]]:
    """The class docstring, ``{field: attribute docstring}`` and ``{field: annotation source}``."""
    tree = ast.parse(textwrap.dedent(inspect.getsource(cls)))
    node = tree.body[0]
    assert isinstance(node, ast.ClassDef)
    docs, annotations = {}, {}
    body = node.body
    for i, stmt in enumerate(body):
        if isinstance(stmt, ast.AnnAssign) and isinstance(stmt.target, ast.Name):
            annotations[stmt.target.id] = ast.unparse(stmt.annotation)
            after = body[i + 1] if i + 1 < len(body) else None
            value = after.value if isinstance(after, ast.Expr) else None
            if isinstance(value, ast.Constant) and isinstance(value.value, str):
                docs[stmt.target.id] = inspect.cleandoc(value.value)
    return ast.get_docstring(node) or "", docs, annotations


def _nested_dataclass(hint: Any) -> type | None:
    """The dataclass inside a field's type (``X``, ``X | None`` or ``list[X]``), if any."""
    if dataclasses.is_dataclass(hint) and isinstance(hint, type):
        return hint
    if typing.get_origin(hint) in (typing.Union, types.UnionType, list):
        for arg in typing.get_args(hint):
            found = _nested_dataclass(arg)
            if found is not None:
                return found
    return None


def resolved_defaults() -> Any:
    """Schema defaults with the default (paper) profile applied, as an OmegaConf node."""
    preset = OmegaConf.from_dotlist(
        [f"{k}={'null' if v is None else v}" for k, v in PROFILES["paper"].items()]
    )
    return OmegaConf.merge(OmegaConf.structured(SpartaConfig), preset)


def _show(value: Any) -> str:
    if value is dataclasses.MISSING or value == "???":
        return "required"
    if OmegaConf.is_config(value):
        value = OmegaConf.to_container(value)
    if value is None:
        return "null"
    return (
        str(value).lower()
        if isinstance(value, bool)
        else repr(value)
        if isinstance(value, str)
        else str(value)
    )


def _field_default(f: dataclasses.Field[Any]) -> Any:
    if f.default is not dataclasses.MISSING:
        return f.default
    if f.default_factory is not dataclasses.MISSING:
        return f.default_factory()
    return dataclasses.MISSING


def schema_keys(cls: type = SpartaConfig, prefix: str = "", defaults: Any = None) -> list[KeyDoc]:
    """Every key of the schema, depth first, in field order."""
    defaults = resolved_defaults() if defaults is None and cls is SpartaConfig else defaults
    _, docs, annotations = class_docs(cls)
    hints = typing.get_type_hints(cls)
    out = []
    for f in dataclasses.fields(cls):
        key = prefix + f.name
        nested = _nested_dataclass(hints[f.name])
        is_section = nested is not None and dataclasses.is_dataclass(_field_default(f))
        if not is_section:
            value = (
                OmegaConf.select(defaults, key, default="???") if defaults is not None else _field_default(f)
            )
            out.append(
                KeyDoc(key=key, type=annotations[f.name], default=_show(value), doc=docs.get(f.name, ""))
            )
        if nested is not None:
            inner = f"{key}[]." if typing.get_origin(hints[f.name]) is list else f"{key}."
            out += schema_keys(nested, inner, defaults if is_section else None)
    return out


def missing_docs(cls: type = SpartaConfig) -> list[str]:
    """Keys whose field has no attribute docstring."""
    return [k.key for k in schema_keys(cls) if not k.doc]


def _cell(text: str) -> str:
    return " ".join(text.split()).replace("|", "\\|")


def _released(key: str) -> str:
    value = PROFILES["released"].get(key, dataclasses.MISSING)
    return "" if value is dataclasses.MISSING else f" (released: `{_show(value)}`)"


def _sections() -> list[tuple[str, str]]:
    """``(section, class docstring)`` of every top-level field of ``SpartaConfig``."""
    hints = typing.get_type_hints(SpartaConfig)
    out = []
    for f in dataclasses.fields(SpartaConfig):
        nested = _nested_dataclass(hints[f.name])
        is_section = nested is not None and dataclasses.is_dataclass(_field_default(f))
        out.append((f.name, class_docs(nested)[0] if is_section and nested else ""))
    return out


INTRO = f"""# Configuration reference

<!-- Generated by `{COMMAND}` from the schema in sparta_hpc/ (attribute docstrings); do not edit by hand.
     tests/test_docs.py fails when this file is out of date or a key has no docstring. -->

A run's config is merged as **schema defaults <- profile preset <- YAML file <- cluster preset <- `key=value`
overrides** and checked before any job starts; unknown keys are refused with the list of valid ones. A cluster
preset (`--cluster-preset NAME` or `cluster=NAME`, a file of `configs/cluster/`) sets only `cluster.*`, the
resources of each stage's Slurm jobs ([cluster guide](cluster.md#execution-on-slurm)). The resolved config is
saved as `RUN_DIR/config.yaml`. The defaults below are those of the default profile `paper`; where the
`released` profile (`run.profile=released`) presets another value, it is shown in parentheses.
`configs/default.yaml` is the whole default config as YAML (generated too); `configs/debug.yaml` (the CPU
demo) and `configs/paper.yaml` override a few keys each.

Keys of list items are written `models[].name`: `models` is a list of `{{name, base, adapter}}` objects.
"""


def render_markdown() -> str:
    """The text of docs/configuration.md."""
    keys = schema_keys()
    parts = [INTRO]
    for section, doc in _sections():
        parts.append(f"## `{section}`\n\n{_cell(doc)}\n" if doc else f"## `{section}`\n")
        rows = ["| key | type | default | description |", "| --- | --- | --- | --- |"]
        for k in keys:
            if k.key == section or k.key.startswith((f"{section}.", f"{section}[]")):
                default = f"`{k.default}`{_released(k.key)}"
                rows.append(f"| `{k.key}` | `{_cell(k.type)}` | {_cell(default)} | {_cell(k.doc)} |")
        parts.append("\n".join(rows) + "\n")
    return "\n".join(parts)


def render_default_yaml() -> str:
    """The text of configs/default.yaml: every key at its default (paper profile)."""
    header = (
        "# The full default config (paper profile), generated by `" + COMMAND + "`; do not edit by hand.\n"
        "# Every key is documented in docs/configuration.md. Copy the keys you change into your own config;\n"
        "# `models` is required: at least 3 entries like {name: cot, base: /path/to/base, adapter: null}.\n"
    )
    return header + OmegaConf.to_yaml(resolved_defaults())


def generated_files() -> dict[Path, str]:
    """Each generated file and the text it must hold."""
    return {CONFIGURATION_MD: render_markdown(), DEFAULT_YAML: render_default_yaml()}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog=COMMAND, description=__doc__.splitlines()[0])
    parser.add_argument("--check", action="store_true", help="only report files that are out of date")
    args = parser.parse_args(argv)
    undocumented = missing_docs()
    if undocumented:
        print(f"keys without an attribute docstring: {', '.join(undocumented)}", file=sys.stderr)
        return 1
    stale = [p for p, text in generated_files().items() if not p.exists() or p.read_text() != text]
    if args.check:
        for p in stale:
            print(f"out of date: {p.relative_to(ROOT)} (run {COMMAND})", file=sys.stderr)
        return 1 if stale else 0
    for path, text in generated_files().items():
        path.write_text(text, encoding="utf-8")
        print(f"wrote {path.relative_to(ROOT)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
