"""The models a run's records name (``players.json``, ``models.json``, the state's adapters), relocatable.

A path inside the run directory (the tiny base, the initial tiny adapters, trained adapters) is stored
relative to it, so a run directory that is moved or copied still finds its own models and never the
original's; a path outside it (the user's base models and adapters) is stored as given. Readers get absolute
paths back (``located``). Runs written before this stored absolute paths: one that names a model of the
run's own kind (``OWN_MODEL``) under another root is read as the same path under this root, unless the
config names that path itself (``keep``: a user's adapter taken from another run).
"""

from __future__ import annotations

import re
from collections.abc import Collection, Iterable
from pathlib import Path
from typing import Any

from sparta_hpc.files import read_json
from sparta_hpc.store.rundir import RunDir

Models = dict[str, dict[str, str | None]]
"""``{name: {"base": path, "adapter": path or None}}``."""

OWN_MODEL = r"(?:models/(?:tiny-base|initial/[^/]+|eval-judge/[^/]+)|iter_\d{3}/train/[^/]+/adapter)"
"""A path the run itself writes a model to, relative to the run directory (``RunDir.tiny_base``,
``initial_adapter``, ``eval_judge_adapter``, ``adapter``); a relative path of any other form in a record is
the user's (a hub id, a path relative to the working directory) and kept as it is."""
_OWN = re.compile(OWN_MODEL)
_OWN_END = re.compile(f"/({OWN_MODEL})/?$")


def user_paths(models: Iterable[Any]) -> set[str]:
    """The bases and adapters a config names itself (``models`` and ``eval.judge_model`` entries; None
    skipped): never re-rooted by ``located``."""
    return {p for m in models if m is not None for p in (m.base, m.adapter) if p is not None}


def stored(run: RunDir, path: str | Path | None) -> str | None:
    """``path`` as records keep it: relative to the run directory when inside it, else as given."""
    if path is None:
        return None
    absolute = Path(path)
    if absolute.is_absolute() and absolute.resolve().is_relative_to(run.root):
        relative = absolute.resolve().relative_to(run.root).as_posix()
        if _OWN.fullmatch(relative):
            return relative
    return str(path)


def located(run: RunDir, value: str | None, keep: Collection[str] = ()) -> str | None:
    """The absolute path a record's ``value`` names in this run directory (see the module docstring)."""
    if value is None:
        return None
    path = Path(value)
    if not path.is_absolute():
        return str(run.root / path) if _OWN.fullmatch(value) else value
    if value in keep or path.is_relative_to(run.root):
        return value
    own = _OWN_END.search(value)
    return str(run.root / own.group(1)) if own else value


def stored_models(run: RunDir, models: Models) -> Models:
    return {name: {key: stored(run, value) for key, value in spec.items()} for name, spec in models.items()}


def located_models(run: RunDir, models: Models, keep: Collection[str] = ()) -> Models:
    return {
        name: {key: located(run, value, keep) for key, value in spec.items()} for name, spec in models.items()
    }


def read_models(run: RunDir, path: Path, keep: Collection[str] = ()) -> Models:
    """A ``players.json`` with absolute paths of this run directory."""
    return located_models(run, read_json(path), keep)


def players_after(t: int, run: RunDir, keep: Collection[str] = ()) -> Models:
    """Each player's base and adapter after iteration t: its trained adapter, or the old one if untrained."""
    previous = read_models(run, run.players(t), keep)
    report = read_json(run.rate_report(t))
    if not report["num_pairs"]:
        return previous
    trained = report.get("pairs_per_player")  # self_rewarding: a player without own pairs is not trained
    return {
        p: {"base": spec["base"], "adapter": str(run.adapter(t, p))}
        if trained is None or trained[p]
        else spec
        for p, spec in previous.items()
    }


def evaluated_models(run: RunDir, t: int, keep: Collection[str] = ()) -> dict[str, Models]:
    """``{label: models}`` that iteration t's evaluate stage evaluated (``models.json``)."""
    return {label: located_models(run, m, keep) for label, m in read_json(run.eval_models(t)).items()}
