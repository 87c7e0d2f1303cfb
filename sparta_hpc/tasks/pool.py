"""The tournament's prompt pool: the task's training prompts as ``(prompt_id, prompt text)`` pairs."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from sparta_hpc.tasks.convert import synthetic_task
from sparta_hpc.tasks.prompts import build_prompt
from sparta_hpc.tasks.schema import SYNTHETIC, TASK_NAMES, read_split


@dataclass
class TaskConfig:
    """Where the tournament's prompts come from."""

    name: str = "synthetic"
    """Task name; ``synthetic`` is the built-in arithmetic task, others are read from ``data_dir``."""
    data_dir: str | None = None
    """Folder written by ``sparta-hpc prepare-data`` (holds ``<name>/train.jsonl``)."""
    synthetic_size: int = 200
    """Number of training prompts of the synthetic task."""
    synthetic_eval_size: int = 50
    """Number of val and of test questions of the synthetic task (each); drawn after the training prompts,
    so it never changes them."""

    def __post_init__(self) -> None:
        if self.name not in (SYNTHETIC, *TASK_NAMES):
            raise ValueError(
                f"task.name={self.name!r} is not valid; allowed values: {', '.join((SYNTHETIC, *TASK_NAMES))}"
            )
        if self.synthetic_size < 1:
            raise ValueError(f"task.synthetic_size={self.synthetic_size} must be >= 1")
        if self.synthetic_eval_size < 0:
            raise ValueError(f"task.synthetic_eval_size={self.synthetic_eval_size} must be >= 0")


def prompt_pool(task: TaskConfig, seed: int) -> list[tuple[str, str]]:
    """Every training prompt of the task, in file order, rendered with the task's template."""
    if task.name == SYNTHETIC:
        examples = synthetic_task(task.synthetic_size, 0, 0, seed=seed)["train"]
    else:
        assert task.data_dir is not None  # checked by config.check_paths
        examples = read_split(Path(task.data_dir) / task.name / "train.jsonl")
    return [(e.id, build_prompt(task.name, e)) for e in examples]
