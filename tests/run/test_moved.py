"""Jobs submitted before the grouped layout still run after it: their pickles name old module paths.

The files in ``tests/data/pre-layout/`` are the ``*_submitted.pkl`` that submitit wrote for the demo's stages
with the flat layout (module paths ``sparta_hpc.executor`` and ``sparta_hpc.jobs``).
"""

from __future__ import annotations

import pickle
from pathlib import Path

import pytest

from sparta_hpc import jobs
from sparta_hpc.cluster.executor import Resumable
from sparta_hpc.config import DEFAULT_CONFIG, load_config, to_yaml
from sparta_hpc.files import atomic_write_text
from sparta_hpc.run import launcher
from sparta_hpc.store.rundir import RunDir

PRE_LAYOUT = Path(__file__).resolve().parents[1] / "data" / "pre-layout"
ENTRY_POINTS = {
    "plan": jobs.prepare_models,
    "generate": jobs.generate_shard,
    "judge": jobs.judge_shard,
    "train": jobs.train_player,
    "evaluate": jobs.evaluate_shard,
}


def load_submission(stage: str) -> object:
    data = (PRE_LAYOUT / f"{stage}_submitted.pkl").read_bytes()
    assert b"sparta_hpc.executor" in data and b"sparta_hpc.jobs" in data  # really the old paths
    return pickle.loads(data)


@pytest.mark.parametrize("stage", sorted(ENTRY_POINTS))
def test_a_pre_layout_job_pickle_resolves_to_the_moved_entry_point(stage: str) -> None:
    submission = load_submission(stage)
    wrapper = submission.function  # type: ignore[attr-defined]
    assert isinstance(wrapper, Resumable)
    assert wrapper.fn is ENTRY_POINTS[stage]


@pytest.mark.slow
def test_a_pre_layout_plan_job_runs_on_the_new_code(tmp_path: Path) -> None:
    """The pickled model-setup job, called on a fresh run directory, builds the tiny models."""
    run = RunDir(tmp_path / "run")
    atomic_write_text(run.config_file, to_yaml(load_config(DEFAULT_CONFIG)))
    players = load_submission("plan").function(str(run.root))  # type: ignore[attr-defined]
    assert sorted(players) == ["tiny-a", "tiny-b", "tiny-c", "tiny-d"]
    assert all(Path(p["adapter"]).is_dir() for p in players.values())


def test_a_pre_layout_launcher_job_starts_with_its_argv(monkeypatch: pytest.MonkeyPatch) -> None:
    """A detached launcher pickled ``sparta_hpc.control.run_detached(argv)``; it now becomes a LaunchSpec."""
    started: list[launcher.LaunchSpec] = []
    monkeypatch.setattr(launcher, "run_launcher_job", lambda spec: started.append(spec) or 0)
    old = b"csparta_hpc.control\nrun_detached\n."  # protocol 0: the global as the old code pickled it
    run_detached = pickle.loads(old)
    argv = ["--config", "/c.yaml", "--run-dir", "/r", "--cluster", "slurm", "--force", "plan.alpha=0.5"]
    assert run_detached(argv) == 0
    assert started == [
        launcher.LaunchSpec(
            config="/c.yaml", run_dir="/r", cluster="slurm", force=True, overrides=("plan.alpha=0.5",)
        )
    ]


PRE_LAYOUT_CONFIG = PRE_LAYOUT / "config.yaml"
"""The config.yaml the flat-layout version saved for the demo (before the keys judge.rubric, plan.schedule,
rate.aggregation, ... existed, and with engine.trust_remote_code)."""


def test_a_pre_layout_run_config_reads_as_that_version_meant_it() -> None:
    from sparta_hpc.config import load_saved_config

    assert "engine" in PRE_LAYOUT_CONFIG.read_text() and "rubric" not in PRE_LAYOUT_CONFIG.read_text()
    cfg = load_saved_config(PRE_LAYOUT_CONFIG)
    assert (cfg.judge.rubric, cfg.plan.schedule, cfg.rate.aggregation) == (
        "released",
        "resample",
        "reputation",
    )
    assert cfg.train.max_prompt_tokens is None and cfg.run.mode == "sparta"
    assert cfg.run.stage_layout == "separate" and not cfg.combat  # the only layout before the key


def test_resuming_a_pre_layout_run_names_what_would_change(tmp_path: Path) -> None:
    """Today's demo config judges with the new wording: resuming the old run must say so, not switch."""
    import shutil

    from sparta_hpc.errors import ConfigChanged
    from sparta_hpc.run.resume import check_resumable

    run = RunDir(tmp_path / "run")
    run.root.mkdir()
    shutil.copy(PRE_LAYOUT_CONFIG, run.config_file)
    with pytest.raises(ConfigChanged, match=r"these keys differ: judge\.rubric, run\.stage_layout\."):
        check_resumable(load_config(DEFAULT_CONFIG), run, force=False)
    old = ["judge.rubric=released", "run.stage_layout=separate"]
    check_resumable(load_config(DEFAULT_CONFIG, old), run, force=False)
