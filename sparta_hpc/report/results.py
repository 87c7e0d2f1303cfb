"""The results tables of a run: every evaluated model on val and test, and the models chosen on val.

``collect`` reads a run's evaluation records; the table builders (``selection_rows``, ``csv_text``,
``models_csv_text``, ``markdown_text``, ``plot_rows``) are pure; ``write_results`` writes the files. The
same records always give the same bytes.
"""

from __future__ import annotations

import csv
import io
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from sparta_hpc.config import load_saved_config
from sparta_hpc.errors import StateError
from sparta_hpc.files import atomic_write_text, parse_records
from sparta_hpc.report.render import md_table
from sparta_hpc.store.models import evaluated_models, stored, user_paths
from sparta_hpc.store.rundir import RunDir
from sparta_hpc.store.state import load_state
from sparta_hpc.tasks.evaluation import (
    INITIAL,
    EvalRecord,
    Scores,
    best_on_val,
    label_order,
    metric_name,
    plan_units,
    split_key,
    summarize,
)

SPLITS = ("val", "test")
KIND_TITLES = {
    "initial": "initial model",
    "best_initial": "best initial model (chosen on val)",
    "best_iteration": "best model of the iteration (chosen on val)",
    "sparta": "SPARTA (chosen on val over all iterations)",
}
"""Row kinds of the results table, in table order, and their titles in the markdown table."""


@dataclass(frozen=True, kw_only=True)
class EvalResults:
    """Mean scores of every evaluated model of a run."""

    task: str
    players: tuple[str, ...]
    """In config order (the tie-break order of every choice)."""
    scores: Scores
    unscored: int = 0
    """Answers without a score (failed Alpaca judgments), left out of the means."""
    extra_tasks: tuple[str, ...] = ()
    """``eval.tasks``: reported in extra columns, never used to choose a model."""
    metric: str | None = None
    """``task.metric`` of a task of your own (null: the built-in task's metric)."""
    adapters: dict[str, dict[str, str | None]] = field(default_factory=dict)
    """``adapters[label][player]``: the evaluated adapter, relative to the run directory when inside it."""

    @property
    def extra_keys(self) -> list[str]:
        """The score keys (``<task>/<split>``) of the extra tasks' columns, in config order."""
        return [split_key(t, s) for t in self.extra_tasks for s in SPLITS]

    @property
    def labels(self) -> list[str]:
        """Evaluated model labels, ``initial`` first, then by iteration."""
        return sorted(self.scores, key=label_order)

    def value(self, label: str, player: str, split: str) -> float | None:
        return self.scores.get(label, {}).get(player, {}).get(split)


@dataclass(frozen=True, kw_only=True)
class ResultRow:
    """One row of the results table; ``label`` and ``player`` are ``None`` when nothing could be chosen."""

    kind: str
    label: str | None
    player: str | None
    val: float | None
    test: float | None
    extra: tuple[float | None, ...] = ()
    """The model's scores on ``EvalResults.extra_keys`` (empty when nothing was chosen)."""


def collect(run: RunDir) -> EvalResults:
    """The records of every finished evaluate stage of the run, summarised."""
    cfg = load_saved_config(run.config_file)
    state = load_state(run)
    if state is None:
        raise StateError(f"{run.state_file} does not exist: {run.root} is not a run directory")
    records: list[EvalRecord] = []
    adapters: dict[str, dict[str, str | None]] = {}
    keep = user_paths([*cfg.models, cfg.eval.judge_model])
    for t in sorted(int(k) for k in state.stages):
        if not state.is_done(t, "evaluate"):
            continue
        evaluated = evaluated_models(run, t, keep) if run.eval_models(t).exists() else {}  # none: not due
        for label, models in evaluated.items():
            adapters[label] = {p: stored(run, spec["adapter"]) for p, spec in models.items()}
        for u in plan_units(t, cfg.player_names, cfg.eval, cfg.run.iterations):
            path = run.eval_records(t, u.label, u.player, u.split, u.shard, u.task)
            records += parse_records(path, EvalRecord.from_dict)
    scores, unscored = summarize(records)
    return EvalResults(
        task=cfg.task.name,
        players=tuple(cfg.player_names),
        scores=scores,
        unscored=unscored,
        extra_tasks=tuple(cfg.eval.tasks),
        metric=cfg.task.metric,
        adapters=adapters,
    )


def _row(kind: str, res: EvalResults, chosen: tuple[str, str] | None) -> ResultRow:
    if chosen is None:
        return ResultRow(kind=kind, label=None, player=None, val=None, test=None)
    label, player = chosen
    val, test = (res.value(label, player, s) for s in SPLITS)
    extra = tuple(res.value(label, player, k) for k in res.extra_keys)
    return ResultRow(kind=kind, label=label, player=player, val=val, test=test, extra=extra)


def selection_rows(res: EvalResults) -> list[ResultRow]:
    """Each initial model, the best initial model, each iteration's best model and SPARTA's final choice
    (the best on val over every model of every evaluated iteration; initial models are not candidates)."""
    rows = []
    iterations = [label for label in res.labels if label != INITIAL]
    if INITIAL in res.scores:
        rows += [_row("initial", res, (INITIAL, p)) for p in res.players]
        rows.append(_row("best_initial", res, best_on_val(res.scores, [(INITIAL, p) for p in res.players])))
    for label in iterations:
        rows.append(_row("best_iteration", res, best_on_val(res.scores, [(label, p) for p in res.players])))
    candidates = [(label, p) for label in iterations for p in res.players]
    rows.append(_row("sparta", res, best_on_val(res.scores, candidates)))
    return rows


def _csv(header: Sequence[str], rows: Sequence[Sequence[Any]]) -> str:
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(header)
    writer.writerows(["" if v is None else repr(v) if isinstance(v, float) else v for v in r] for r in rows)
    return out.getvalue()


def csv_text(
    rows: Sequence[ResultRow],
    extra_keys: Sequence[str] = (),
    adapters: dict[str, dict[str, str | None]] | None = None,
) -> str:
    """``results.csv``: ``kind,iteration,player,val,test`` (floats at full precision, empty when missing),
    then one ``<task>/<split>`` column per ``eval.tasks`` task and split, then (with ``adapters``) the
    ``adapter`` of the row's model: relative to the run directory when inside it, empty for a bare base."""
    table = [[r.kind, r.label, r.player, r.val, r.test, *(r.extra or [None] * len(extra_keys))] for r in rows]
    if adapters is None:
        return _csv(("kind", "iteration", "player", "val", "test", *extra_keys), table)
    for line, r in zip(table, rows, strict=True):
        line.append(adapters.get(r.label or "", {}).get(r.player or ""))
    return _csv(("kind", "iteration", "player", "val", "test", *extra_keys, "adapter"), table)


def models_csv_text(res: EvalResults) -> str:
    """``results_by_model.csv``: ``iteration,player,split,score`` for every evaluated model."""
    rows = [
        (label, p, split, res.value(label, p, split))
        for label in res.labels
        for p in res.players
        for split in (*SPLITS, *res.extra_keys)
        if split in res.scores.get(label, {}).get(p, {})
    ]
    return _csv(("iteration", "player", "split", "score"), rows)


def _fmt(value: float | None) -> str:
    return "-" if value is None else f"{value:.4f}"


def markdown_text(res: EvalResults) -> str:
    """``results.md``: the results table, then one model x iteration table per split."""
    metric = metric_name(res.task, res.metric)
    lines = [f"# Results: {res.task}", "", f"Metric: {metric}, mean over each split's examples.", ""]
    if res.unscored:
        lines += [f"{res.unscored} answers could not be scored (failed judgments) and are left out.", ""]
    if res.extra_tasks:
        tasks = ", ".join(res.extra_tasks)
        lines += [f"Also evaluated on {tasks}; every model is chosen on {res.task}'s val score.", ""]
    extra = res.extra_keys
    selection = [
        [KIND_TITLES[r.kind], r.label or "-", r.player or "-", _fmt(r.val), _fmt(r.test)]
        + [_fmt(v) for v in r.extra or [None] * len(extra)]
        for r in selection_rows(res)
    ]
    header = ("model", "iteration", "player", "val", "test", *extra)
    lines.append(md_table(header, selection, compact_rule=True))
    for split in (*SPLITS, *extra):
        body = [[p, *(_fmt(res.value(label, p, split)) for label in res.labels)] for p in res.players]
        split_metric = metric_name(split.split("/")[0]) if "/" in split else metric
        lines += ["", f"## {split} {split_metric} per model and iteration", ""]
        lines.append(md_table(("player", *res.labels), body, compact_rule=True))
    return "\n".join(lines) + "\n"


def plot_rows(res: EvalResults) -> list[dict[str, Any]]:
    """Long rows for plots: ``iteration`` (-1 for the initial models), ``player``, ``split``, ``metric``,
    ``value``; models without a score are left out."""
    return [
        {
            "iteration": label_order(label),
            "player": p,
            "split": split,
            "metric": metric_name(res.task, res.metric),
            "value": v,
        }
        for label in res.labels
        for p in res.players
        for split in SPLITS
        if (v := res.value(label, p, split)) is not None
    ]


def write_results(run: RunDir, out_dir: Path) -> list[Path]:
    """Write ``results.csv``, ``results_by_model.csv`` and ``results.md`` into ``out_dir``; return them."""
    res = collect(run)
    files = {
        "results.csv": csv_text(selection_rows(res), res.extra_keys, res.adapters),
        "results_by_model.csv": models_csv_text(res),
        "results.md": markdown_text(res),
    }
    paths = []
    for name, text in files.items():
        atomic_write_text(out_dir / name, text)
        paths.append(out_dir / name)
    return paths
