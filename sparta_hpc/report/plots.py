"""The report's figures as PNG files (matplotlib, headless Agg backend), each of a fixed pixel size.

Every function takes plain numbers (from ``sparta_hpc.report.analysis`` and the run's records) and a path, and
writes exactly ``SIZES[name]`` pixels, so a test can check the images without knowing the data.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402  (the backend must be chosen first)
import numpy as np  # noqa: E402
from matplotlib.figure import Figure  # noqa: E402
from matplotlib.ticker import MaxNLocator  # noqa: E402

DPI = 100
SIZES: dict[str, tuple[int, int]] = {
    "trajectories": (1200, 500),
    "win_rates": (700, 600),
    "judge_agreement": (700, 600),
    "evaluation": (1000, 450),
}
"""Width and height in pixels of each figure (the file is ``<name>.png``)."""
Z95 = 1.959963984540054


def _figure(name: str, ncols: int = 1) -> tuple[Figure, Any]:
    w, h = SIZES[name]
    fig, axes = plt.subplots(
        1, ncols, figsize=(w / DPI, h / DPI), dpi=DPI, layout="constrained", squeeze=False
    )
    return fig, axes[0]


def _save(fig: Figure, path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=DPI, format="png")
    plt.close(fig)
    return path


def _colors(players: Sequence[str]) -> dict[str, Any]:
    cmap = plt.get_cmap("tab10" if len(players) <= 10 else "tab20")
    return {p: cmap(i % cmap.N) for i, p in enumerate(players)}


def trajectories(
    path: Path, start: Mapping[str, tuple[float, float]], boards: Sequence[tuple[int, list[dict[str, Any]]]]
) -> Path:
    """Left: SPARTA reputation after each iteration (x = iterations done, 0 = start) with a +-1.96 sigma
    band. Right: the iteration's Bradley-Terry rating with its bootstrap 95% interval as a band."""
    fig, (left, right) = _figure("trajectories", 2)
    players = list(start)
    color = _colors(players)
    x = [0] + [t + 1 for t, _ in boards]
    for p in players:
        rows = [next(r for r in rows if r["player"] == p) for _, rows in boards]
        rep = np.array([start[p][0]] + [r["reputation"] for r in rows])
        dev = np.array([start[p][1]] + [r["deviation"] for r in rows])
        left.plot(x, rep, marker="o", color=color[p], label=p)
        left.fill_between(x, rep - Z95 * dev, rep + Z95 * dev, color=color[p], alpha=0.15)
        if rows:
            xs = x[1:]
            right.plot(xs, [r["bt"] for r in rows], marker="o", color=color[p], label=p)
            low, high = [r["bt_low"] for r in rows], [r["bt_high"] for r in rows]
            right.fill_between(xs, low, high, color=color[p], alpha=0.15)
    left.set(title="SPARTA reputation (band: ±1.96 deviation)", xlabel="iterations done", ylabel="reputation")
    right.set(title="Bradley-Terry rating per iteration (band: bootstrap 95% CI)", xlabel="iterations done")
    right.set_ylabel("BT rating (Elo scale)")
    for ax in (left, right):
        ax.set_xticks(x)
        ax.grid(alpha=0.3)
    left.legend(fontsize="small", ncols=2)
    return _save(fig, path)


def _heatmap(
    name: str, path: Path, matrix: np.ndarray, labels: Sequence[str], title: str, cbar: str, cmap: str
) -> Path:
    fig, (ax,) = _figure(name)
    image = ax.imshow(np.ma.masked_invalid(matrix), cmap=cmap, vmin=0.0, vmax=1.0)
    ax.set_xticks(range(len(labels)), labels, rotation=45, ha="right")
    ax.set_yticks(range(len(labels)), labels)
    for i in range(len(labels)):
        for j in range(len(labels)):
            value = matrix[i, j]
            if not math.isnan(value):
                red, green, blue, _ = image.cmap(image.norm(value))
                ink = "black" if 0.299 * red + 0.587 * green + 0.114 * blue > 0.5 else "white"
                ax.text(j, i, f"{value:.2f}", ha="center", va="center", fontsize="small", color=ink)
    ax.set_title(title)
    fig.colorbar(image, ax=ax, label=cbar)
    return _save(fig, path)


def win_rates(path: Path, matrix: np.ndarray, players: Sequence[str], title: str) -> Path:
    """Heatmap of ``matrix[i, j]``, the rate at which row player i beat column player j (blank: never met)."""
    fig_title = f"Pairwise win rate (row beats column), {title}"
    return _heatmap("win_rates", path, matrix, players, fig_title, "win rate (ties count half)", "RdBu")


def judge_agreement(path: Path, matrix: np.ndarray, judges: Sequence[str], title: str) -> Path:
    """Heatmap of the share of commonly judged matches where two judges' verdicts agree."""
    return _heatmap(
        "judge_agreement",
        path,
        matrix,
        judges,
        f"Judge agreement, {title}",
        "share of equal verdicts",
        "viridis",
    )


def evaluation(path: Path, rows: Sequence[Mapping[str, Any]]) -> Path:
    """One panel per (split, metric): each player's score over iterations. ``rows`` have ``iteration``,
    ``player``, ``split``, ``metric`` and ``value``; without rows the figure says so."""
    panels = sorted({(str(r["split"]), str(r["metric"])) for r in rows}, key=lambda sm: (sm[0] != "val", sm))[
        :4
    ]
    fig, axes = _figure("evaluation", max(1, len(panels)))
    if not panels:
        axes[0].text(0.5, 0.5, "no evaluation results in this run", ha="center", va="center")
        axes[0].set_axis_off()
        return _save(fig, path)
    players = sorted({str(r["player"]) for r in rows})
    color = _colors(players)
    for ax, (split, metric) in zip(axes, panels, strict=True):
        for p in players:
            points = sorted(
                (int(r["iteration"]) + 1, float(r["value"]))
                for r in rows
                if (r["player"], r["split"], r["metric"]) == (p, split, metric)
            )
            if points:
                ax.plot(*zip(*points, strict=True), marker="o", color=color[p], label=p)
        ax.set(title=f"{metric} on {split}", xlabel="iterations done (0 = initial models)", ylabel=metric)
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        ax.grid(alpha=0.3)
    axes[0].legend(fontsize="small")
    return _save(fig, path)
