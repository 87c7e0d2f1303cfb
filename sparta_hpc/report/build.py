"""``sparta-hpc report RUN_DIR``: leaderboards, plots, evaluation results and the resolved config of a run,
as ``report.html`` (self-contained: images are embedded) and ``report.md``, plus ``leaderboard.json/csv``.

Reads only the run directory; works on a finished run or one still running (rated iterations so far).
"""

from __future__ import annotations

import argparse
import csv
import io
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from sparta_hpc.config import SpartaConfig, load_saved_config
from sparta_hpc.errors import StateError
from sparta_hpc.files import atomic_write_text, dump_json, parse_records, read_json
from sparta_hpc.method.preferences import judge_weights
from sparta_hpc.method.types import JudgedMatch
from sparta_hpc.report import analysis, plots, training
from sparta_hpc.report.render import render_html, render_markdown
from sparta_hpc.store.rundir import RunDir
from sparta_hpc.store.state import RunState, load_state

BOOTSTRAP_SAMPLES = 1000
"""Resamples of the matches per iteration for the Bradley-Terry intervals (seeded by run.seed and t)."""
CSV_COLUMNS = (
    "iteration",
    "rank",
    "player",
    "reputation",
    "deviation",
    "bt",
    "bt_low",
    "bt_high",
    "wins",
    "losses",
    "ties",
    "parse_failure_rate",
    "judge_agreement",
)


@dataclass(frozen=True, kw_only=True)
class IterationBoard:
    """The analysed results of one rated iteration."""

    iteration: int
    rows: list[dict[str, Any]]
    judges: dict[str, dict[str, Any]]
    num_matches: int
    num_decided: int

    def to_dict(self) -> dict[str, Any]:
        return {
            "iteration": self.iteration,
            "num_matches": self.num_matches,
            "num_decided": self.num_decided,
            "players": self.rows,
            "judges": self.judges,
        }


@dataclass(frozen=True, kw_only=True)
class Pooled:
    """Outcomes and judged matches of every rated iteration together (for the heatmaps)."""

    outcomes: list[analysis.Outcome]
    judged: list[JudgedMatch]


def rated_iterations(run: RunDir, total: int) -> list[int]:
    """The iterations whose rating stage has written its records."""
    return [t for t in range(total) if run.ratings(t).exists() and run.judged(t).exists()]


def analyse(run: RunDir, cfg: SpartaConfig, iterations: list[int]) -> tuple[list[IterationBoard], Pooled]:
    """Leaderboard, judge statistics and outcomes of every rated iteration."""
    boards, pooled = [], Pooled(outcomes=[], judged=[])
    failed = cfg.rate.failed_judgment
    for t in iterations:
        judged = parse_records(run.judged(t), JudgedMatch.from_dict)
        reps = {p: (r["rating"], r["deviation"]) for p, r in read_json(run.ratings(t)).items()}
        weights = judge_weights({p: r for p, (r, _) in reps.items()}, cfg.rate.aggregation)
        rows = analysis.leaderboard(
            judged,
            reps,
            failed,
            seed=[cfg.run.seed, t],
            num_samples=BOOTSTRAP_SAMPLES,
            aggregation=cfg.rate.aggregation,
        )
        decided = analysis.outcomes(judged, weights, failed)
        judges = analysis.judge_stats(judged, weights, failed)
        boards.append(
            IterationBoard(
                iteration=t, rows=rows, judges=judges, num_matches=len(judged), num_decided=len(decided)
            )
        )
        pooled.outcomes.extend(decided)
        pooled.judged.extend(judged)
    return boards, pooled


def write_leaderboard(out: Path, boards: list[IterationBoard]) -> list[Path]:
    """``leaderboard.json`` (every iteration, with judges) and ``leaderboard.csv`` (one row per player)."""
    meta = {
        "bradley_terry": {"scale": analysis.SCALE, "anchor": analysis.ANCHOR, "prior_ties": 1.0},
        "bootstrap": {"samples": BOOTSTRAP_SAMPLES, "level": 0.95, "seed": "[run.seed, iteration]"},
    }
    json_path, csv_path = out / "leaderboard.json", out / "leaderboard.csv"
    atomic_write_text(json_path, dump_json({**meta, "iterations": [b.to_dict() for b in boards]}))
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=CSV_COLUMNS, lineterminator="\n")
    writer.writeheader()
    for b in boards:
        for row in b.rows:
            writer.writerow({"iteration": b.iteration, **row})
    atomic_write_text(csv_path, buf.getvalue())
    return [json_path, csv_path]


def write_plots(
    out: Path,
    cfg: SpartaConfig,
    boards: list[IterationBoard],
    pooled: Pooled,
    eval_rows: list[dict[str, Any]],
) -> dict[str, Path]:
    """Every figure of ``plots.SIZES`` as ``out/<name>.png``."""
    players = cfg.player_names
    start = {p: (cfg.rate.initial_rating, cfg.rate.initial_deviation) for p in players}
    span = f"iterations {boards[0].iteration}-{boards[-1].iteration}" if boards else "no rated iteration"
    return {
        "trajectories": plots.trajectories(
            out / "trajectories.png", start, [(b.iteration, b.rows) for b in boards]
        ),
        "win_rates": plots.win_rates(
            out / "win_rates.png", analysis.win_rate_matrix(pooled.outcomes, players), players, span
        ),
        "judge_agreement": plots.judge_agreement(
            out / "judge_agreement.png",
            analysis.judge_agreement_matrix(pooled.judged, players),
            players,
            span,
        ),
        "evaluation": plots.evaluation(out / "evaluation.png", eval_rows),
    }


# ---------------------------------------------------------------- evaluation results


def has_evaluation(state: RunState) -> bool:
    """Whether any evaluate stage of the run recorded outputs."""
    for stages in state.stages.values():
        entry = stages.get("evaluate")
        if entry and (entry["outputs"] or entry["info"].get("evaluated")):
            return True
    return False


def evaluation_results(run: RunDir, state: RunState, out: Path) -> tuple[list[Path], list[dict[str, Any]]]:
    """The evaluation stage's results files (``results.write_results``) and the points of its plot, when
    the run has evaluation records."""
    if not has_evaluation(state):
        return [], []
    from sparta_hpc.report import results

    return results.write_results(run, out), results.plot_rows(results.collect(run))


def read_csv(path: Path | None) -> list[dict[str, str]]:
    if path is None:
        return []
    with open(path, encoding="utf-8", newline="") as f:
        return list(csv.DictReader(f))


# ---------------------------------------------------------------- command


SAMPLE_MATCHES = 3
"""Matches of the last rated iteration shown with their answers and every judge's scores."""
SAMPLE_CHARS = 800
"""An answer or prompt in the report is cut to this many characters (the records keep it whole)."""


def sample_matches(run: RunDir, t: int, n: int = SAMPLE_MATCHES) -> list[dict[str, Any]]:
    """The first ``n`` matches of iteration ``t`` (file order, so the same every time) as the report shows
    them: the prompt, both players' answers and each judge's two scores (``None``: no usable score)."""
    judged = parse_records(run.judged(t), JudgedMatch.from_dict)[:n]
    return [
        {
            "iteration": t,
            "match_id": m.match_id,
            "prompt": _cut(m.prompt),
            "answers": [(p, _cut(r)) for p, r in zip(m.players, m.responses, strict=True)],
            "scores": [(j, s if s is None else list(s)) for j, s in sorted(m.judgments.items())],
        }
        for m in judged
    ]


def _cut(text: str) -> str:
    return text if len(text) <= SAMPLE_CHARS else text[:SAMPLE_CHARS] + " [...]"


def build_report(run: RunDir, out: Path) -> dict[str, Any]:
    """Write every report file into ``out``; returns what was written (for the CLI and tests)."""
    state = load_state(run)
    if state is None:
        raise StateError(
            f"{run.state_file} does not exist: {run.root} is not a run directory (or never started)"
        )
    cfg = load_saved_config(run.config_file)
    out.mkdir(parents=True, exist_ok=True)
    boards, pooled = analyse(run, cfg, rated_iterations(run, state.iterations_total))
    files = write_leaderboard(out, boards)
    result_files, points = evaluation_results(run, state, out)
    figures = write_plots(out, cfg, boards, pooled, points)
    steps = training.dpo_steps(run, range(state.iterations_total), cfg.player_names)
    atomic_write_text(out / "dpo_steps.csv", training.steps_csv(steps))
    results_md = next((p for p in result_files if p.suffix == ".md"), None)
    table = read_csv(next((p for p in result_files if p.name == "results.csv"), None))
    doc = {
        "run_dir": str(run.root),
        "iteration": state.iteration,
        "iterations_total": state.iterations_total,
        "boards": boards,
        "figures": figures,
        "results_table": table,
        "results_markdown": results_md.read_text(encoding="utf-8") if results_md else None,
        "config_yaml": run.config_file.read_text(encoding="utf-8"),
        "dpo": training.summary_cells(steps),
        "samples": sample_matches(run, boards[-1].iteration) if boards else [],
    }
    atomic_write_text(out / "report.md", render_markdown(doc))
    atomic_write_text(out / "report.html", render_html(doc))
    written = [
        *files,
        *result_files,
        *figures.values(),
        out / "dpo_steps.csv",
        out / "report.md",
        out / "report.html",
    ]
    return {"out": out, "files": written, "iterations": [b.iteration for b in boards]}


def main(args: argparse.Namespace) -> int:
    """The ``report`` command: ``args.run_dir`` and ``args.out`` (default RUN_DIR/report)."""
    run = RunDir(args.run_dir)
    out = Path(args.out) if getattr(args, "out", None) else run.report_dir
    summary = build_report(run, out.resolve())
    print(f"rated iterations: {len(summary['iterations'])}; wrote {len(summary['files'])} files to {out}")
    print(f"open {summary['out'] / 'report.html'}")
    return 0
