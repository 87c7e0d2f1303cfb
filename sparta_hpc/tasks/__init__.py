"""Evaluation tasks: the canonical data format, converters, prompt builders and metrics.

Light to import (no torch, no ``datasets`` until the hub is used). See docs/formats.md, "Task data".
"""

from sparta_hpc.errors import TaskDataError
from sparta_hpc.tasks.convert import synthetic_task
from sparta_hpc.tasks.metrics import extract, judge_score, score
from sparta_hpc.tasks.prompts import TEMPLATES, build_prompt
from sparta_hpc.tasks.schema import SPLITS, SYNTHETIC, TASK_NAMES, TaskExample, read_split, read_task

__all__ = [
    "SPLITS",
    "SYNTHETIC",
    "TASK_NAMES",
    "TEMPLATES",
    "TaskDataError",
    "TaskExample",
    "build_prompt",
    "extract",
    "judge_score",
    "read_split",
    "read_task",
    "score",
    "synthetic_task",
]
