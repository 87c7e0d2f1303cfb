"""Tables and plots of ``sparta-hpc simulate``: per setting and iteration, the mean and std over the seeds.

``summary.md`` / ``summary.csv``: the last iteration of each setting; ``iterations.csv``: every iteration;
``runs.csv``: every seed; one PNG per metric (matplotlib, headless Agg backend) with a line per setting.
"""

from __future__ import annotations

import csv
import io
import math
from collections.abc import Mapping, Sequence
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402  (the backend must be chosen first)

from sparta_hpc.files import atomic_write_text  # noqa: E402
from sparta_hpc.tools.sim_model import SimRun  # noqa: E402

METRICS: dict[str, tuple[str, str, int]] = {
    "spearman": ("rank corr.", "Spearman correlation of the ratings with the true qualities", 3),
    "pair_accuracy": ("pair acc.", "share of preference pairs whose chosen response is truly better", 3),
    "pairs": ("pairs", "preference pairs kept (of plan.num_prompts matches)", 0),
    "floor": ("at floor", "players at the rating floor (R < rate.floor + 1)", 1),
    "weight_ratio": ("max/min R", "judge weight of the top-rated player over the bottom one", 1),
    "herfindahl": ("HHI", "Herfindahl index of the normalised ratings (1/m: equal weights, 1: one judge)", 3),
    "rating_min": ("R min", "lowest rating", 1),
    "rating_max": ("R max", "highest rating", 1),
    "mean_quality": ("mean q", "mean true quality during the iteration (moves only with sim.learn_rate)", 2),
}
"""``{metric: (column header, meaning, decimals)}`` in table order."""
PLOTS = ("spearman", "pair_accuracy", "floor", "weight_ratio")
"""Metrics drawn as ``<metric>.png`` (x: iteration, a line per setting, band: +-1 std over the seeds)."""

Stats = dict[str, tuple[float, float]]
"""``{metric: (mean, std)}`` over the seeds of one setting and iteration."""


def mean_std(values: Sequence[float]) -> tuple[float, float]:
    """Mean and sample standard deviation (0 for a single value); nan when any value is nan."""
    mean = math.fsum(values) / len(values)
    if len(values) < 2:
        return mean, 0.0
    return mean, math.sqrt(math.fsum((v - mean) ** 2 for v in values) / (len(values) - 1))


def aggregate(runs: Sequence[SimRun]) -> list[Stats]:
    """Per iteration, each metric's mean and std over ``runs`` (one run per seed)."""
    iterations = len(runs[0].metrics)
    return [{k: mean_std([r.metrics[t][k] for r in runs]) for k in METRICS} for t in range(iterations)]


def _cell(stats: tuple[float, float], decimals: int, with_std: bool) -> str:
    mean, std = stats
    if math.isnan(mean):
        return "nan"
    return f"{mean:.{decimals}f} ± {std:.{decimals}f}" if with_std else f"{mean:.{decimals}f}"


def markdown(results: Mapping[str, list[Stats]], seeds: Sequence[int], command: str, scale: str) -> str:
    """The Markdown summary: last-iteration table, rank correlation and floor count per iteration."""
    with_std = len(seeds) > 1
    head = " | ".join(h for h, _, _ in METRICS.values())
    lines = [
        "# Simulated SPARTA tournaments",
        "",
        f"Command: `{command}`",
        "",
        f"{scale}; seeds {seeds[0]}..{seeds[-1]} ({len(seeds)}), mean ± sample std over the seeds.",
        "",
        f"## After the last iteration ({len(next(iter(results.values())))})",
        "",
        f"| setting | {head} |",
        "| --- |" + " ---: |" * len(METRICS),
    ]
    for label, stats in results.items():
        cells = [_cell(stats[-1][k], d, with_std) for k, (_, _, d) in METRICS.items()]
        lines.append(f"| {label} | {' | '.join(cells)} |")
    lines += ["", "Columns: " + "; ".join(f"{h}: {meaning}" for h, meaning, _ in METRICS.values()) + "."]
    for metric in ("spearman", "floor", "weight_ratio"):
        header, meaning, decimals = METRICS[metric]
        iterations = len(next(iter(results.values())))
        lines += [
            "",
            f"## {header} per iteration ({meaning})",
            "",
            "| setting | " + " | ".join(f"t={t}" for t in range(iterations)) + " |",
            "| --- |" + " ---: |" * iterations,
        ]
        for label, stats in results.items():
            lines.append(
                f"| {label} | " + " | ".join(_cell(s[metric], decimals, False) for s in stats) + " |"
            )
    return "\n".join(lines) + "\n"


def _csv(rows: Sequence[Sequence[object]]) -> str:
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerows(rows)
    return out.getvalue()


def _number(x: float) -> str:
    return repr(round(x, 6)) if math.isfinite(x) else str(x)


def stats_csv(results: Mapping[str, list[Stats]], swept: Mapping[str, Mapping[str, str]], last: bool) -> str:
    """One row per setting (``last``: its last iteration) or per setting and iteration; ``swept[label]``:
    the setting's swept keys and values, one column each."""
    keys = list(dict.fromkeys(k for values in swept.values() for k in values))
    metric_columns = [f"{k}_{s}" for k in METRICS for s in ("mean", "std")]
    rows: list[list[object]] = [["setting", *keys, "iteration", *metric_columns]]
    for label, stats in results.items():
        chosen = [(len(stats) - 1, stats[-1])] if last else list(enumerate(stats))
        for t, row in chosen:
            numbers = [_number(v) for k in METRICS for v in row[k]]
            rows.append([label, *(swept[label].get(k, "") for k in keys), t, *numbers])
    return _csv(rows)


def runs_csv(runs: Mapping[str, Sequence[tuple[int, SimRun]]]) -> str:
    """Every seed's metrics and end-of-iteration ratings: one row per setting, seed and iteration (a rating
    column is empty where a setting has fewer players)."""
    players = max((run.players for seeded in runs.values() for _, run in seeded), key=len)
    rows: list[list[object]] = [["setting", "seed", "iteration", *METRICS, *(f"R_{p}" for p in players)]]
    for label, seeded in runs.items():
        for seed, run in seeded:
            for t, metrics in enumerate(run.metrics):
                ratings = [_number(run.ratings[t][p]) if p in run.ratings[t] else "" for p in players]
                rows.append([label, seed, t, *(_number(metrics[k]) for k in METRICS), *ratings])
    return _csv(rows)


def plot(path: Path, metric: str, results: Mapping[str, list[Stats]]) -> Path:
    """``metric`` per iteration, a line per setting with a +-1 std band."""
    header, meaning, _ = METRICS[metric]
    fig, ax = plt.subplots(figsize=(9, 5), dpi=100, layout="constrained")
    cmap = plt.get_cmap("tab10" if len(results) <= 10 else "tab20")
    for i, (label, stats) in enumerate(results.items()):
        x = list(range(len(stats)))
        mean = [s[metric][0] for s in stats]
        std = [s[metric][1] for s in stats]
        color = cmap(i % cmap.N)
        ax.plot(x, mean, marker="o", color=color, label=label)
        low = [m - s for m, s in zip(mean, std, strict=True)]
        ax.fill_between(x, low, [m + s for m, s in zip(mean, std, strict=True)], color=color, alpha=0.15)
    if metric == "weight_ratio":
        ax.set_yscale("log")
    ax.set(title=f"{header}: {meaning}", xlabel="iteration t", ylabel=header)
    ax.grid(alpha=0.3)
    ax.legend(fontsize="small")
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, format="png")
    plt.close(fig)
    return path


def write_outputs(
    out: Path,
    runs: Mapping[str, Sequence[tuple[int, SimRun]]],
    swept: Mapping[str, Mapping[str, str]],
    command: str,
    scale: str,
    plots: bool = True,
) -> dict[str, list[Stats]]:
    """Write every table (and, if ``plots``, every plot) under ``out``; return the per-setting statistics."""
    results = {label: aggregate([run for _, run in seeded]) for label, seeded in runs.items()}
    seeds = [seed for seed, _ in next(iter(runs.values()))]
    atomic_write_text(out / "summary.md", markdown(results, seeds, command, scale))
    atomic_write_text(out / "summary.csv", stats_csv(results, swept, last=True))
    atomic_write_text(out / "iterations.csv", stats_csv(results, swept, last=False))
    atomic_write_text(out / "runs.csv", runs_csv(runs))
    for metric in PLOTS if plots else ():
        plot(out / f"{metric}.png", metric, results)
    return results
