"""Files that describe tasks of your own: ``DATA_DIR/<name>/task.yaml`` beside the data, and judge prompt
files (``judge.rubric_file``, ``eval.judge_rubric_file``). Read when a config is loaded or a judge job
starts."""

from __future__ import annotations

import difflib
from collections.abc import Mapping
from dataclasses import replace
from pathlib import Path
from typing import Any

import yaml

from sparta_hpc.errors import ConfigError
from sparta_hpc.tasks.pool import TaskConfig
from sparta_hpc.tasks.prompts import check_judge_template
from sparta_hpc.tasks.schema import SYNTHETIC, TASK_NAMES

TASK_FILE = "task.yaml"
"""The description of a task of your own beside its split files."""
TASK_FILE_KEYS = ("template", "metric", "answer_pattern")
"""The ``task`` keys a task file may set."""


def task_file(name: str, data_dir: str | None) -> Path | None:
    """``DATA_DIR/<name>/task.yaml`` of a task that is not built in, when the file exists."""
    if name in (SYNTHETIC, *TASK_NAMES) or data_dir is None or "/" in name or name.startswith("."):
        return None
    path = Path(data_dir) / name / TASK_FILE
    return path if path.is_file() else None


def task_file_keys(name: str, data_dir: str | None, given: Mapping[Any, Any]) -> dict[str, Any]:
    """The keys of the task's ``task.yaml`` that the config leaves unset (``given``: the config's own ``task``
    keys, null for unset), checked as the config's would be; ConfigError naming the file otherwise. Empty
    when there is no file or the config describes the task itself (sets ``task.metric``)."""
    path = task_file(name, data_dir)
    if path is None or given.get("metric") is not None:
        return {}
    try:
        values = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
    except (OSError, UnicodeDecodeError, yaml.YAMLError) as e:
        raise ConfigError(f"{path}: cannot read: {str(e).splitlines()[0]}") from None
    if not isinstance(values, dict):
        raise ConfigError(f"{path}: expected a mapping of {', '.join(TASK_FILE_KEYS)}")
    for key in values:
        if key not in TASK_FILE_KEYS:
            close = difflib.get_close_matches(str(key), TASK_FILE_KEYS, n=1)
            hint = f" (did you mean {close[0]!r}?)" if close else ""
            raise ConfigError(f"{path}: unknown key {key!r}{hint}; valid keys: {', '.join(TASK_FILE_KEYS)}")
        if values[key] is not None and not isinstance(values[key], str):
            raise ConfigError(f"{path}: {key} must be a string, got {values[key]!r}")
    chosen = {k: v for k, v in values.items() if given.get(k) is None and v is not None}
    try:
        replace(TaskConfig(name=name, data_dir=data_dir, metric=chosen.get("metric", "exact")), **chosen)
    except ValueError as e:
        raise ConfigError(f"{path}: {e}") from None
    return chosen


def read_rubric(path: str | None, key: str) -> str | None:
    """The text of a judge prompt file (``judge.rubric_file``, ``eval.judge_rubric_file``), or None when
    ``path`` is None; ConfigError naming ``key`` when it cannot be read or lacks a placeholder."""
    if path is None:
        return None
    try:
        text = Path(path).read_text(encoding="utf-8")
        check_judge_template(text)
    except (OSError, UnicodeDecodeError, ValueError) as e:
        raise ConfigError(f"{key}={path!r}: {getattr(e, 'strerror', None) or e}", key) from None
    return text
