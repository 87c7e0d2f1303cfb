"""Optional TensorBoard scalars of a run (``run.tensorboard=true``): ratings, judge parse rates, DPO losses
and evaluation metrics, written after each committed iteration into ``RUN_DIR/tensorboard``.

Off by default; needs the ``tensorboard`` package (extra ``tensorboard``) and nothing from the network. Step s
is the number of committed iterations, so step 0 holds the initial models' evaluation.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from sparta_hpc.files import read_json
from sparta_hpc.store.rundir import RunDir
from sparta_hpc.store.state import RunState
from sparta_hpc.tasks.evaluation import INITIAL, label_after


def iteration_scalars(run: RunDir, state: RunState, t: int) -> list[tuple[str, float, int]]:
    """``(tag, value, step)`` of everything iteration t produced, read from its records and the state."""
    step = t + 1
    out: list[tuple[str, float, int]] = []
    for player, r in sorted(read_json(run.ratings(t)).items()):
        out += [(f"rating/{player}", r["rating"], step), (f"deviation/{player}", r["deviation"], step)]
    report = read_json(run.rate_report(t))
    out.append(("pairs", float(report["num_pairs"]), step))
    for judge, counts in sorted(report["judge_counts"].items()):
        total = sum(counts.values())
        if total:
            out.append((f"judge_parse_rate/{judge}", counts["usable"] / total, step))
    for player in sorted(read_json(run.ratings(t))):
        stats = run.train_stats(t, player)
        if stats.exists() and read_json(stats).get("train_loss") is not None:
            out.append((f"dpo_loss/{player}", float(read_json(stats)["train_loss"]), step))
    evaluated = state.stage_entry(t, "evaluate") or {"info": {}}
    for label, players in sorted(evaluated["info"].get("scores", {}).items()):
        label_step = 0 if label == INITIAL else step if label == label_after(t) else None
        for player, splits in sorted(players.items()):
            for split, value in sorted(splits.items()):
                if value is not None and label_step is not None:
                    out.append((f"eval_{split}/{player}", float(value), label_step))
    return out


def write_iteration(run: RunDir, state: RunState, t: int) -> Path:
    """Append iteration t's scalars to the run's TensorBoard log."""
    from torch.utils.tensorboard import SummaryWriter

    writer: Any = SummaryWriter(log_dir=str(run.tensorboard_dir))
    try:
        for tag, value, step in iteration_scalars(run, state, t):
            writer.add_scalar(tag, value, step)
    finally:
        writer.close()
    return run.tensorboard_dir
