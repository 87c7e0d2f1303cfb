"""The tournament's prompt pool: the task's training prompts as ``(prompt_id, prompt text)`` pairs."""

from __future__ import annotations

import difflib
import re
from dataclasses import dataclass
from pathlib import Path

from sparta_hpc.tasks.convert import synthetic_task
from sparta_hpc.tasks.prompts import RAW_TEMPLATE, build_prompt, check_template
from sparta_hpc.tasks.schema import SYNTHETIC, TASK_NAMES, read_split

METRICS = ("exact", "numeric", "choice", "f1", "judge")
"""The metrics of a task of your own (``task.metric``; docs/formats.md, "Your own tasks")."""
_NAME = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_.-]*")


@dataclass
class TaskConfig:
    """Where the tournament's prompts come from, and for a task of your own how it is prompted and scored."""

    name: str = "synthetic"
    """Task name; ``synthetic`` is the built-in arithmetic task, others are read from ``data_dir``. A name
    that is not a built-in task is a task of your own: set ``metric`` (and ``template``,
    ``answer_pattern``)."""
    data_dir: str | None = None
    """Folder written by ``sparta-hpc prepare-data`` (holds ``<name>/train.jsonl``)."""
    synthetic_size: int = 200
    """Number of training prompts of the synthetic task."""
    synthetic_eval_size: int = 50
    """Number of val and of test questions of the synthetic task (each); drawn after the training prompts,
    so it never changes them."""
    template: str | None = None
    """Prompt template: ``{prompt}`` (required), ``{choices}`` (options as ``A. ...`` lines) and
    ``{metadata.KEY}`` (an example's metadata value) are filled, other braces are kept. Null: the built-in
    task's template; ``{prompt}`` alone for a task of your own."""
    metric: str | None = None
    """Metric of a task of your own (required there, null for built-in tasks): ``exact`` (normalised string
    match), ``numeric``, ``choice`` (option letter), ``f1`` (token F1) or ``judge`` (``eval.judge_model``
    scores 1-10)."""
    answer_pattern: str | None = None
    """Regular expression that extracts the answer of a task of your own (its last match; group 1 if it has
    one); null: the metric's own extractor. Not used by ``judge``."""

    def __post_init__(self) -> None:
        builtin = self.name in (SYNTHETIC, *TASK_NAMES)
        if not builtin and self.metric is None:
            close = difflib.get_close_matches(self.name, (SYNTHETIC, *TASK_NAMES), n=1)
            hint = f" (did you mean {close[0]!r}?)" if close else ""
            raise ValueError(
                f"task.name={self.name!r} is not a built-in task{hint} ("
                + ", ".join((SYNTHETIC, *TASK_NAMES))
                + "); "
                f"for a task of your own set task.metric ({', '.join(METRICS)}) and optionally task.template "
                "and task.answer_pattern, in the config or in DATA_DIR/<name>/task.yaml (docs/formats.md, "
                "'Your own tasks')"
            )
        if not builtin and (not _NAME.fullmatch(self.name) or ":" in self.name):
            raise ValueError(
                f"task.name={self.name!r}: use letters, digits, '_', '-' and '.' (a folder name)"
            )
        if builtin and (self.metric is not None or self.answer_pattern is not None):
            key = "task.metric" if self.metric is not None else "task.answer_pattern"
            raise ValueError(f"{key} is for a task of your own; task.name={self.name!r} has its own metric")
        if self.metric is not None and self.metric not in METRICS:
            raise ValueError(
                f"task.metric={self.metric!r} is not valid; allowed values: {', '.join(METRICS)}"
            )
        if self.template is not None:
            try:
                check_template(self.template)
            except ValueError as e:
                raise ValueError(f"task.template: {e}") from None
        if self.answer_pattern is not None:
            try:
                re.compile(self.answer_pattern)
            except re.error as e:
                raise ValueError(
                    f"task.answer_pattern={self.answer_pattern!r}: not a valid regular expression: {e}"
                ) from None
        if self.synthetic_size < 1:
            raise ValueError(f"task.synthetic_size={self.synthetic_size} must be >= 1")
        if self.synthetic_eval_size < 0:
            raise ValueError(f"task.synthetic_eval_size={self.synthetic_eval_size} must be >= 0")

    @property
    def custom(self) -> bool:
        """A task of your own (described by ``metric``, ``template`` and ``answer_pattern``)."""
        return self.metric is not None


def task_template(task: TaskConfig) -> str | None:
    """The template ``build_prompt`` gets: ``task.template``, ``{prompt}`` for a task of your own, else None
    (the built-in task's default)."""
    return task.template if task.template is not None or not task.custom else RAW_TEMPLATE


def prompt_pool(task: TaskConfig, seed: int) -> list[tuple[str, str]]:
    """Every training prompt of the task, in file order, rendered with the task's template."""
    if task.name == SYNTHETIC:
        examples = synthetic_task(task.synthetic_size, 0, 0, seed=seed)["train"]
    else:
        assert task.data_dir is not None  # checked by config.check_paths
        examples = read_split(Path(task.data_dir) / task.name / "train.jsonl")
    return [(e.id, build_prompt(task.name, e, task_template(task))) for e in examples]
