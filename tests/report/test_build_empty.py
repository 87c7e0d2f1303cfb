"""A report of a run that has not rated any iteration yet: every file and plot is still written."""

from __future__ import annotations

from pathlib import Path

from sparta_hpc.config import load_config, to_yaml
from sparta_hpc.report import plots
from sparta_hpc.report.build import build_report
from sparta_hpc.store.rundir import RunDir
from sparta_hpc.store.state import RunState, save_state


def test_report_of_a_run_with_nothing_rated(tmp_path: Path) -> None:
    run = RunDir(tmp_path / "run")
    run.root.mkdir()
    run.config_file.write_text(to_yaml(load_config(None, ["run.iterations=2"])))
    save_state(run, RunState(config_hash="x", iterations_total=2))
    summary = build_report(run, run.report_dir)
    assert summary["iterations"] == []
    names = {p.name for p in summary["files"]}
    assert {f"{n}.png" for n in plots.SIZES} | {"report.html", "report.md", "leaderboard.csv"} <= names
    assert "No iteration has been rated yet." in (run.report_dir / "report.md").read_text()
    assert (run.report_dir / "leaderboard.csv").read_text().startswith("iteration,rank,player,")
