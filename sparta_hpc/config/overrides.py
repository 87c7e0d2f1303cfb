"""``key=value`` overrides of the command line: parsing, list items (``models.0.base=...``,
``models[0].base=...``) and "did you mean" for unknown keys."""

from __future__ import annotations

import difflib
import re
from collections.abc import Sequence
from typing import Any

import yaml
from omegaconf import OmegaConf
from omegaconf.errors import OmegaConfBaseException

from sparta_hpc.errors import ConfigError

_INDEXED = re.compile(r"(?:^|\.)(\d+)(?=\.|$)|\[(\d+)\]")
"""A list index in a dotted key: ``models.0.base`` or ``models[0].base``."""

Indexed = list[tuple[list[str | int], str, Any]]
"""Overrides of list items: (key path, the override as given, its value)."""


def did_you_mean(key: str, valid: Sequence[str]) -> str:
    """`` (did you mean 'x'?)`` for the closest valid key (a close name in the same section, else the same
    name in another section), or ``""`` when none is close."""
    section, _, name = key.rpartition(".")
    valid = [*valid, *sorted({k.rpartition(".")[0] for k in valid} - {""})]  # sections are keys too
    siblings = {k.rpartition(".")[2]: k for k in valid if k.rpartition(".")[0] == section}
    close = [siblings[c] for c in difflib.get_close_matches(name, list(siblings), n=1, cutoff=0.6)]
    close = close or [k for k in valid if k.rpartition(".")[2] == name][:1]
    return f" (did you mean {close[0]!r}?)" if close else ""


def _path(key: str) -> list[str | int]:
    parts: list[str | int] = []
    for piece in re.split(r"\.(?![^\[]*\])", key):
        m = re.fullmatch(r"([^\[\]]*)((?:\[\d+\])*)", piece)
        if m is None:
            raise ConfigError(f"command line: {key}: not a valid key")
        if m.group(1):
            parts.append(int(m.group(1)) if m.group(1).isdigit() else m.group(1))
        parts += [int(i) for i in re.findall(r"\[(\d+)\]", m.group(2))]
    return parts


def parse_overrides(overrides: Sequence[str]) -> tuple[Any, Indexed]:
    """The overrides as one OmegaConf layer, and apart from it those that name a list item."""
    for item in overrides:
        if "=" not in item or item.startswith("="):
            raise ConfigError(f"override {item!r} must look like key=value (e.g. plan.alpha=0.5)")
    plain = [o for o in overrides if not _INDEXED.search(o.split("=", 1)[0])]
    indexed: Indexed = []
    for item in overrides:
        key = item.split("=", 1)[0]
        if _INDEXED.search(key):
            indexed.append((_path(key), item, _dotlist([f"value={item.split('=', 1)[1]}"])["value"]))
    return _dotlist(plain), indexed


def apply_indexed(merged: Any, indexed: Indexed, valid: Sequence[str]) -> Any:
    """Set each list-item override in the merged config; an index past the list's end or an unknown key is a
    ConfigError naming the override."""
    for path, item, value in indexed:
        node, shown = merged, ""
        for i, part in enumerate(path):
            last = i == len(path) - 1
            if isinstance(part, int):
                if not OmegaConf.is_list(node):
                    raise ConfigError(f"command line: {item}: {shown or 'the config'} is not a list")
                if part >= len(node):
                    raise ConfigError(
                        f"command line: {item}: {shown} has {len(node)} entries ({shown}.0 .. "
                        f"{shown}.{len(node) - 1}); give the whole list to add one"
                    )
                name = f"{shown}[{part}]"
            else:
                if not OmegaConf.is_dict(node) or part not in node:
                    keys = [str(k) for k in node] if OmegaConf.is_dict(node) else []
                    hint = did_you_mean(part, keys) or did_you_mean(f"{shown}.{part}", valid)
                    raise ConfigError(f"command line: {item}: unknown key {f'{shown}.{part}'!r}{hint}")
                name = f"{shown}.{part}" if shown else part
            if last:
                try:
                    node[part] = value
                except OmegaConfBaseException as e:
                    raise ConfigError(f"command line: {item}: {str(e).splitlines()[0]}") from None
            else:
                node = node[part]
            shown = name
    return merged


def _dotlist(overrides: Sequence[str]) -> Any:
    try:
        return OmegaConf.from_dotlist(list(overrides))
    except yaml.YAMLError:  # a value that is not YAML: name the override
        for item in overrides:
            try:
                OmegaConf.from_dotlist([item])
            except yaml.YAMLError as e:
                raise ConfigError(f"command line: {item}: not valid YAML: {yaml_problem(e)[1]}") from None
        raise
    except OmegaConfBaseException as e:
        raise ConfigError(f"command line: {str(e).splitlines()[0]}") from None


def yaml_problem(e: yaml.YAMLError) -> tuple[int | None, str]:
    """The 1-based line of a YAML error (None if unknown) and its problem, with the context's line."""
    first = str(e).splitlines()[0] if str(e) else type(e).__name__
    mark, problem = getattr(e, "problem_mark", None), getattr(e, "problem", None) or first
    context, context_mark = getattr(e, "context", None), getattr(e, "context_mark", None)
    inside = f" ({context} at line {context_mark.line + 1})" if context and context_mark is not None else ""
    return (mark.line + 1 if mark is not None else None), f"{problem}{inside}"
