"""What a run has done so far, read from its state file only (works from any login shell)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from sparta_hpc.config import STAGES
from sparta_hpc.rundir import RunDir
from sparta_hpc.state import StateError, load_state


def run_status(root: Path) -> dict[str, Any]:
    """The status document of ``sparta-hpc status --json`` (documented in docs/formats.md)."""
    run = RunDir(root)
    state = load_state(run)
    if state is None:
        raise StateError(f"{run.state_file} does not exist: {root} is not a run directory (or never started)")
    stages = []
    for t in range(state.iterations_total):
        for stage in STAGES:
            entry = state.stage_entry(t, stage)
            status = "done" if entry is not None else "todo"
            row: dict[str, Any] = {"iteration": t, "stage": stage, "state": status}
            if entry is not None:
                row["seconds"] = entry["info"].get("seconds")
                row["info"] = {k: v for k, v in entry["info"].items() if k != "seconds"}
            stages.append(row)
    return {
        "run_dir": str(run.root),
        "done": state.done,
        "iteration": state.iteration,
        "iterations_total": state.iterations_total,
        "stages": stages,
        "ratings": {
            p: {"rating": r["rating"], "deviation": r["deviation"]} for p, r in sorted(state.ratings.items())
        },
        "adapters": state.adapters,
    }


def status_text(status: dict[str, Any]) -> str:
    """A table of iterations x stages, then the ratings (best first)."""
    lines = [
        f"run: {status['run_dir']}",
        f"iterations committed: {status['iteration']}/{status['iterations_total']}"
        + ("  (done)" if status["done"] else ""),
        "",
        "iter  " + "  ".join(f"{s:<8}" for s in STAGES),
    ]
    for t in range(status["iterations_total"]):
        row = [r for r in status["stages"] if r["iteration"] == t]
        lines.append(f"{t:>4}  " + "  ".join(f"{r['state']:<8}" for r in row))
    lines += ["", "ratings:"]
    ranked = sorted(status["ratings"].items(), key=lambda kv: (-kv[1]["rating"], kv[0]))
    for i, (p, r) in enumerate(ranked, start=1):
        lines.append(f"  {i:>2}  {p:<16} {r['rating']:>9.3f}  sigma {r['deviation']:.4f}")
    return "\n".join(lines)
