"""DPO per step in the report: TRL's logged metrics of every player's training job (``stats.json``'s ``log``).

``dpo_steps.csv`` has one row per logged step; the report shows one summary row per iteration and player.
Jobs of runs before these metrics were kept have no ``log``: they give no rows.
"""

from __future__ import annotations

import csv
import io
from collections.abc import Sequence
from typing import Any

from sparta_hpc.files import read_json
from sparta_hpc.store.rundir import RunDir

METRICS = ("loss", "rewards/chosen", "rewards/rejected", "rewards/margins", "rewards/accuracies")
"""TRL's DPO metrics the report keeps, in column order."""
SUMMARY_HEADERS = ("iteration", "player", "steps", "loss first", "loss last", "margin mean", "accuracy mean")


def dpo_steps(run: RunDir, iterations: Sequence[int], players: Sequence[str]) -> list[dict[str, Any]]:
    """``{iteration, player, step, epoch, <METRICS>}`` of every logged step, by iteration, player, step."""
    rows = []
    for t in iterations:
        for p in players:
            path = run.train_stats(t, p)
            log = read_json(path).get("log") if path.exists() else None
            for i, entry in enumerate(log or [], start=1):
                step = {
                    "iteration": t,
                    "player": p,
                    "step": entry.get("step", i),
                    "epoch": entry.get("epoch"),
                }
                rows.append(step | {m: entry.get(m) for m in METRICS})
    return rows


def steps_csv(rows: Sequence[dict[str, Any]]) -> str:
    """``dpo_steps.csv``: iteration, player, step, epoch, the metrics (full precision; empty if missing)."""
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    header = ("iteration", "player", "step", "epoch", *METRICS)
    writer.writerow(header)
    for r in rows:
        writer.writerow(
            ["" if r[h] is None else repr(r[h]) if isinstance(r[h], float) else r[h] for h in header]
        )
    return out.getvalue()


def summary_cells(rows: Sequence[dict[str, Any]]) -> list[list[str]]:
    """One row per (iteration, player): steps, first and last loss, mean reward margin and accuracy."""
    groups: dict[tuple[int, str], list[dict[str, Any]]] = {}
    for r in rows:
        groups.setdefault((r["iteration"], r["player"]), []).append(r)
    cells = []
    for (t, p), steps in groups.items():
        losses = [s["loss"] for s in steps if s["loss"] is not None]
        cells.append(
            [
                str(t),
                p,
                str(len(steps)),
                _fmt(losses[0] if losses else None),
                _fmt(losses[-1] if losses else None),
                _fmt(_mean([s["rewards/margins"] for s in steps])),
                _fmt(_mean([s["rewards/accuracies"] for s in steps])),
            ]
        )
    return cells


def _mean(values: list[Any]) -> float | None:
    known = [float(v) for v in values if v is not None]
    return sum(known) / len(known) if known else None


def _fmt(value: float | None) -> str:
    return "-" if value is None else f"{value:.4f}"
