"""Which iteration ``sparta-hpc export`` takes for each player (no model, no run)."""

from __future__ import annotations

from pathlib import Path

import pytest

from sparta_hpc.report.export import ExportError, choose
from sparta_hpc.report.results import EvalResults
from sparta_hpc.store.state import RunState

SCORES = {
    "initial": {"a": {"val": 0.9}, "b": {"val": 0.9}},  # never a candidate
    "iter_0": {"a": {"val": 0.5}, "b": {"val": 0.7}},
    "iter_1": {"a": {"val": 0.6}, "b": {"val": 0.7}},  # b: a tie goes to the earlier iteration
    "iter_2": {"a": {"val": 0.8}, "b": {"val": 0.1}},  # not committed yet: not a candidate
}


def state(committed: int) -> RunState:
    return RunState(config_hash="x", iterations_total=3, iteration=committed)


def test_best_last_and_a_number() -> None:
    res = EvalResults(task="gsm8k", players=("a", "b"), scores=SCORES)
    best = choose(state(2), res, "best")
    assert {p: t for p, (t, _) in best.items()} == {"a": 1, "b": 0}
    assert "highest val score over iterations iter_0, iter_1" in best["a"][1]
    assert {p: t for p, (t, _) in choose(state(2), res, "last").items()} == {"a": 1, "b": 1}
    assert {p: t for p, (t, _) in choose(state(3), res, "best").items()} == {"a": 2, "b": 0}
    assert {p: t for p, (t, _) in choose(state(2), res, "0").items()} == {"a": 0, "b": 0}


@pytest.mark.parametrize(
    ("committed", "iteration", "message"),
    [
        (0, "best", "no iteration is committed yet"),
        (2, "2", r"committed iterations 0\.\.1"),
        (2, "-1", r"committed iterations 0\.\.1"),
        (2, "newest", "use best, last or a number"),
    ],
)
def test_what_cannot_be_exported_is_refused(committed: int, iteration: str, message: str) -> None:
    res = EvalResults(task="gsm8k", players=("a", "b"), scores=SCORES)
    with pytest.raises(ExportError, match=message):
        choose(state(committed), res, iteration)


def test_best_without_val_scores_says_what_to_use() -> None:
    res = EvalResults(task="gsm8k", players=("a",), scores={"initial": {"a": {"val": 0.5}}})
    with pytest.raises(ExportError, match="a has no val score.*--iteration last"):
        choose(state(1), res, "best")


def test_results_of_a_run_without_a_due_evaluation_name_no_adapter(tmp_path: Path) -> None:
    """An evaluate stage that was not due wrote no models.json: results (and so export) still read the run."""
    from sparta_hpc.config import DEFAULT_CONFIG, load_config, to_yaml
    from sparta_hpc.report import results
    from sparta_hpc.store.rundir import RunDir
    from sparta_hpc.store.state import save_state

    run = RunDir(tmp_path / "run")
    run.root.mkdir()
    run.config_file.write_text(to_yaml(load_config(DEFAULT_CONFIG, ["eval.every=0"])))
    done = RunState(config_hash="x", iterations_total=1, iteration=1)
    done.mark_done(0, "evaluate", {}, {"evaluated": False})
    save_state(run, done)
    res = results.collect(run)
    assert (res.scores, res.adapters) == ({}, {})
    with pytest.raises(ExportError, match="tiny-a has no val score"):
        choose(done, res, "best")
