"""The tournament's prompt pool: the task's training prompts as ``(prompt_id, prompt text)`` pairs."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from sparta_hpc.tasks.convert import synthetic_task
from sparta_hpc.tasks.prompts import build_prompt
from sparta_hpc.tasks.schema import SYNTHETIC, read_split

if TYPE_CHECKING:
    from sparta_hpc.config import SpartaConfig


def prompt_pool(cfg: SpartaConfig) -> list[tuple[str, str]]:
    """Every training prompt of the configured task, in file order, rendered with the task's template."""
    if cfg.task.name == SYNTHETIC:
        examples = synthetic_task(cfg.task.synthetic_size, 0, 0, seed=cfg.run.seed)["train"]
    else:
        assert cfg.task.data_dir is not None  # checked by config.check_paths
        examples = read_split(Path(cfg.task.data_dir) / cfg.task.name / "train.jsonl")
    return [(e.id, build_prompt(cfg.task.name, e)) for e in examples]
