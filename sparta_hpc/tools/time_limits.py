"""Per-stage Slurm time limits recommended from ``plan``'s estimate of one task's run time.

A limit far above a task's run time keeps the scheduler from backfilling the job into gaps; one too close
makes every task hit it. The recommendation is the longest task of any iteration (``plan``'s upper bound:
every response uses its whole ``max_new_tokens``) times ``MARGIN`` plus ``SLACK_MIN``, rounded up to
``ROUND_MIN``, at least ``FLOOR_MIN``. A task that still hits its limit is requeued from its saved progress
(``cluster.max_num_timeout`` times), so a limit too short costs a requeue, not the work done.
"""

from __future__ import annotations

import math
from typing import Any

MARGIN = 2.0
"""Factor on the estimated task time (the GPU constants are estimates; shared nodes run slower)."""
SLACK_MIN = 10
"""Minutes added for what the estimate leaves out: loading from a busy file system, Python start, saves."""
FLOOR_MIN = 20
"""No recommendation below this: submitit counts a USR2 before min(0.8 x limit, limit - 10 min) as a
preemption, and the signal comes ``cluster.signal_delay_s`` before the limit."""
ROUND_MIN = 5
"""Recommendations are multiples of this."""


def recommend(task_minutes: float) -> int:
    """The time limit in minutes for a task estimated to run ``task_minutes``."""
    minutes = MARGIN * task_minutes + SLACK_MIN
    return max(FLOOR_MIN, ROUND_MIN * math.ceil(minutes / ROUND_MIN))


def task_minutes(report: dict[str, Any]) -> dict[str, float]:
    """The longest estimated task of each stage over all iterations, from ``plan_report``'s rows (GPU-hours
    of a stage / its tasks / GPUs per task), by the cluster section whose resources the stage's jobs use (a
    combat task is a ``generate`` job); stages without an estimate (no tasks) are left out."""
    longest: dict[str, float] = {}
    for iteration in report["iterations"]:
        for stage, row in iteration["stages"].items():
            if row["tasks"] and row["gpus_per_task"]:
                minutes = 60 * row["gpu_hours"] / row["tasks"] / row["gpus_per_task"]
                section = "generate" if stage == "combat" else stage
                longest[section] = max(longest.get(section, 0.0), minutes)
    return longest


def time_limits(report: dict[str, Any], configured: dict[str, int]) -> dict[str, dict[str, Any]]:
    """Per stage: the estimate, the recommended limit and the configured ``cluster.<stage>.timeout_min``."""
    return {
        stage: {"task_min": round(m, 1), "recommended_min": recommend(m), "configured_min": configured[stage]}
        for stage, m in task_minutes(report).items()
    }


def format_limits(limits: dict[str, dict[str, Any]]) -> str:
    """The lines ``plan`` prints under its table."""
    lines = [
        f"time limits per task (cluster.<stage>.timeout_min; recommended: {MARGIN:g} x the estimate "
        f"+ {SLACK_MIN} min, at least {FLOOR_MIN}):"
    ]
    for stage, row in limits.items():
        verdict = ""
        if row["configured_min"] < row["task_min"]:
            verdict = "  <- below the estimate: every task would hit it"
        elif row["configured_min"] > 4 * row["recommended_min"]:
            verdict = "  <- far above: the scheduler cannot backfill such jobs"
        lines.append(
            f"  {stage:<9} estimate {row['task_min']:>7.1f} min  recommended {row['recommended_min']:>5} "
            f"min  configured {row['configured_min']:>5} min{verdict}"
        )
    return "\n".join(lines)
