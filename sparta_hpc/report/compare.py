"""``sparta-hpc compare``: one table and one plot over several finished runs: SPARTA, baselines, ablations.

Read-only: each run's config, state and evaluation records are read as ``sparta-hpc report`` reads them.
Per run: its name, profile, the result-changing keys that differ between the runs, the model chosen on val
(its val and test score, as in the run's ``results.csv``), the best initial model's scores and the spread of
the final ratings. Writes ``compare.md``, ``compare.csv`` and ``compare.png``.
"""

from __future__ import annotations

import argparse
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from sparta_hpc.config import load_saved_config
from sparta_hpc.config.load import flatten, result_keys, to_dict
from sparta_hpc.errors import StateError
from sparta_hpc.files import atomic_write_text
from sparta_hpc.report import results
from sparta_hpc.report.render import md_table
from sparta_hpc.store.rundir import RunDir
from sparta_hpc.store.state import load_state
from sparta_hpc.tasks.evaluation import metric_name

COLUMNS = (
    "run",
    "profile",
    "task",
    "metric",
    "chosen_iteration",
    "chosen_player",
    "chosen_val",
    "chosen_test",
    "best_initial_player",
    "best_initial_val",
    "best_initial_test",
    "rating_spread",
)
"""The fixed columns of ``compare.csv``; the differing config keys follow, one column each."""
EXTRA_KEYS = ("run.iterations",)
"""Keys compared besides the result-changing ones (``run.iterations`` is result-neutral for resuming only)."""


@dataclass(frozen=True, kw_only=True)
class RunSummary:
    folder: str
    name: str
    keys: dict[str, Any]
    row: dict[str, Any]
    """``COLUMNS`` but ``run``, and the run's differing keys are added by ``compare``."""


def summarize_run(root: Path) -> RunSummary:
    """One finished run's row; StateError naming the folder when it is not a finished run directory."""
    run = RunDir(root)
    if not root.is_dir():
        raise StateError(f"{root}: no such run directory")
    state = load_state(run) if run.config_file.is_file() else None
    if state is None:
        raise StateError(f"{root} is not a run directory (no config.yaml and state.json)")
    if not state.done:
        raise StateError(
            f"{root}: the run is unfinished ({state.iteration}/{state.iterations_total} iterations done); "
            "resume it or leave it out"
        )
    cfg = load_saved_config(run.config_file)
    res = results.collect(run)
    chosen = {r.kind: r for r in results.selection_rows(res)}
    sparta, initial = chosen["sparta"], chosen.get("best_initial")
    ratings = [float(r["rating"]) for r in state.ratings.values()]
    keys = {k: v for k, v in result_keys(cfg).items() if k != "run.profile"}
    keys |= {k: v for k, v in flatten(to_dict(cfg)).items() if k in EXTRA_KEYS}
    row = {
        "profile": cfg.run.profile,
        "task": cfg.task.name,
        "metric": metric_name(cfg.task.name, cfg.task.metric),
        "chosen_iteration": sparta.label,
        "chosen_player": sparta.player,
        "chosen_val": sparta.val,
        "chosen_test": sparta.test,
        "best_initial_player": initial.player if initial else None,
        "best_initial_val": initial.val if initial else None,
        "best_initial_test": initial.test if initial else None,
        "rating_spread": max(ratings) - min(ratings) if ratings else None,
    }
    return RunSummary(folder=root.name, name=cfg.run.name, keys=keys, row=row)


def compare(roots: Sequence[Path]) -> tuple[list[str], list[dict[str, Any]]]:
    """The differing keys (sorted) and one row per run (in the given order). A run is named by ``run.name``
    when every run has a distinct one, else by its folder."""
    runs = [summarize_run(Path(r)) for r in roots]
    names = [r.name for r in runs]
    if len(set(names)) != len(names):
        names = [r.folder for r in runs]
    all_keys = sorted({k for r in runs for k in r.keys})
    differing = [k for k in all_keys if len({repr(r.keys.get(k)) for r in runs}) > 1]
    rows = [
        {"run": name, **r.row, **{k: r.keys.get(k) for k in differing}}
        for name, r in zip(names, runs, strict=True)
    ]
    return differing, rows


def _cell(v: Any) -> Any:
    return "" if v is None else repr(v) if isinstance(v, float) else str(v)


def csv_text(differing: Sequence[str], rows: Sequence[dict[str, Any]]) -> str:
    """``compare.csv``: ``COLUMNS`` then the differing keys; floats at full precision, empty when missing."""
    header = [*COLUMNS, *differing]
    return results._csv(header, [[r[c] for c in header] for r in rows])


def _fmt(v: Any) -> str:
    return "-" if v is None else f"{v:.4f}" if isinstance(v, float) else str(v)


def markdown_text(differing: Sequence[str], rows: Sequence[dict[str, Any]]) -> str:
    """``compare.md``: the comparison table and what its columns mean."""
    header = [*COLUMNS, *differing]
    lines = [
        "# Comparison of runs",
        "",
        "chosen: the model chosen on the training task's val score over every iteration (the run's "
        "`results.csv` sparta row); best_initial: the initial model best on val; rating_spread: highest "
        "minus lowest final rating. Further columns: the result-changing keys that differ between the runs.",
        "",
        md_table(header, [[_fmt(r[c]) for c in header] for r in rows], compact_rule=True),
    ]
    return "\n".join(lines) + "\n"


def plot(path: Path, rows: Sequence[dict[str, Any]]) -> Path:
    """``compare.png``: per run, grouped bars of the chosen and the best initial model's val and test."""
    import numpy as np

    from sparta_hpc.report import plots

    plots.SIZES.setdefault("compare", (1000, 450))
    fig, axes = plots._figure("compare")
    ax = axes[0]
    series = ("chosen_val", "chosen_test", "best_initial_val", "best_initial_test")
    x = np.arange(len(rows))
    width = 0.8 / len(series)
    for i, key in enumerate(series):
        values = [np.nan if r[key] is None else float(r[key]) for r in rows]
        ax.bar(x + (i - 1.5) * width, values, width, label=key.replace("_", " "))
    ax.set_xticks(x, [str(r["run"]) for r in rows], rotation=20, ha="right")
    metrics = sorted({str(r["metric"]) for r in rows})
    ax.set(title="runs compared (models chosen on val)", ylabel=" / ".join(metrics))
    ax.grid(alpha=0.3, axis="y")
    ax.legend(fontsize="small")
    return plots._save(fig, path)


def write(roots: Sequence[Path], out: Path) -> list[Path]:
    differing, rows = compare(roots)
    paths = [out / "compare.md", out / "compare.csv"]
    atomic_write_text(paths[0], markdown_text(differing, rows))
    atomic_write_text(paths[1], csv_text(differing, rows))
    return [*paths, plot(out / "compare.png", rows)]


def main(args: argparse.Namespace) -> int:
    for path in write([Path(r) for r in args.run_dirs], Path(args.out)):
        print(f"wrote {path}")
    return 0
