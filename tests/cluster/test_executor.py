"""Slurm parameters and sbatch files derived from a stage's resources (no cluster needed).

The sbatch files of the a100x16 preset are compared with the record ``tests/data/sbatch_a100x16.txt``; a
missing record fails the test. If a change of the sbatch files is normal, regenerate the record with

    SPARTA_REGENERATE_GOLDEN=1 python -m pytest tests/cluster/test_executor.py

which writes the file and still fails, then review ``git diff tests/data/`` and commit it.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest

from sparta_hpc.cluster import executor
from sparta_hpc.config import load_config

ROOT = Path(__file__).resolve().parents[2]
DATA = ROOT / "tests" / "data"
FOLDER = Path("/shared/runs/paper/jobs/iter_000")
TASKS = {"generate": 8, "judge": 16, "train": 10, "evaluate": 20, "launcher": 1}
REGENERATE = "SPARTA_REGENERATE_GOLDEN"
"""Set to 1 to rewrite the record files (the test still fails: review the diff, commit, run again)."""


@pytest.fixture
def fake_srun(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """submitit's Slurm executor wants an ``srun`` on PATH; the rendering needs no real one."""
    srun = tmp_path / "bin" / "srun"
    srun.parent.mkdir()
    srun.write_text("#!/bin/sh\nexit 1\n")
    srun.chmod(0o755)
    monkeypatch.setenv("PATH", f"{srun.parent}{os.pathsep}{os.environ['PATH']}")


def test_sbatch_files_of_the_a100x16_preset_match_the_record(fake_srun: None) -> None:
    cfg = load_config(ROOT / "configs" / "paper.yaml", ["cluster=a100x16"])
    text = "".join(
        f"==> {stage} ({n} tasks)\n{executor.sbatch_text(cfg.cluster, stage, _folder(stage), n)}\n"
        for stage, n in TASKS.items()
    ).replace(sys.executable, "PYTHON")
    record = DATA / "sbatch_a100x16.txt"
    regenerate = f"{REGENERATE}=1 python -m pytest {Path(__file__).relative_to(ROOT)}"
    if os.environ.get(REGENERATE) == "1":
        record.write_text(text)
        pytest.fail(f"{record} rewritten ({REGENERATE}=1): review `git diff {record}`, commit it, run again")
    assert record.exists(), f"{record} is missing: restore it from git, or regenerate: {regenerate}"
    assert record.read_text() == text, f"sbatch text changed; if this is normal, regenerate: {regenerate}"


def _folder(stage: str) -> Path:
    """A stage's jobs folder in the run directory (the launcher's own: ``jobs/launcher``)."""
    return FOLDER.parent / "launcher" if stage == "launcher" else FOLDER / stage


def test_every_resource_reaches_submitit_and_extras_pass_through() -> None:
    overrides = [
        "cluster.train.partition=gpu",
        "cluster.train.account=proj",
        "cluster.train.qos=high",
        "cluster.train.nodes=2",
        "cluster.train.gpus_per_node=4",
        "cluster.train.tasks_per_node=4",
        "cluster.train.cpus_per_task=6",
        "cluster.train.mem_gb=200",
        "cluster.train.timeout_min=90",
        "cluster.train.constraint=a100",
        "cluster.train.exclude=node[01-02]",
        "cluster.train.array_parallelism=3",
        "cluster.train.reservation=ai",
        "cluster.train.sbatch={mail-type: FAIL, wckey: proj}",
        "cluster.train.setup=[module load cuda]",
        "cluster.signal_delay_s=45",
    ]
    params = executor.slurm_parameters(load_config(overrides=overrides).cluster, "train")
    assert params == {
        "name": "train",
        "timeout_min": 90,
        "nodes": 2,
        "tasks_per_node": 4,
        "cpus_per_task": 6,
        "gpus_per_node": 4,
        "mem_gb": 200.0,
        "slurm_partition": "gpu",
        "slurm_account": "proj",
        "slurm_qos": "high",
        "slurm_constraint": "a100",
        "slurm_exclude": "node[01-02]",
        "slurm_signal_delay_s": 45,
        "slurm_array_parallelism": 3,
        "slurm_setup": ["module load cuda"],
        "slurm_srun_args": ["--cpus-per-task=6", "--kill-on-bad-exit=1"],
        "slurm_additional_parameters": {
            "requeue": True,
            "reservation": "ai",
            "mail-type": "FAIL",
            "wckey": "proj",
        },
    }


def test_plan_model_setup_runs_with_the_launcher_resources() -> None:
    cfg = load_config(overrides=["cluster.launcher.cpus_per_task=3"])
    assert executor.slurm_parameters(cfg.cluster, "plan")["cpus_per_task"] == 3
    assert executor.slurm_parameters(cfg.cluster, "plan")["name"] == "plan"


def test_job_names_carry_the_run_directory_stage_and_iteration(tmp_path: Path) -> None:
    from sparta_hpc.store.rundir import RunDir

    run = RunDir(tmp_path / "paper-1 (copy)")
    assert executor.job_name("judge", run.jobs(3, "judge")) == "paper-1__copy_.judge.it3"
    assert executor.job_name("launcher", run.launcher_jobs) == "paper-1__copy_.launcher"
    assert executor.job_name("train", tmp_path / "elsewhere") == "train"
    cfg = load_config(overrides=["cluster.backend=slurm"])
    assert executor.slurm_parameters(cfg.cluster, "train", run.jobs(0, "train"))["name"] == (
        "paper-1__copy_.train.it0"
    )


def test_every_srun_step_gets_the_cpus_of_its_task_and_no_wckey_is_forced(fake_srun: None) -> None:
    cfg = load_config(overrides=["cluster.generate.cpus_per_task=5"])
    text = executor.sbatch_text(cfg.cluster, "generate", FOLDER / "generate", 2)
    srun = next(line for line in text.splitlines() if line.startswith("srun "))
    assert " --cpus-per-task=5 " in srun and " --kill-on-bad-exit=1 " in srun
    assert "#SBATCH --cpus-per-task=5" in text
    assert "wckey" not in text
    own = load_config(overrides=["cluster.generate.sbatch={wckey: proj_x}"]).cluster
    assert "#SBATCH --wckey=proj_x" in executor.sbatch_text(own, "generate", FOLDER / "generate", 2)


@pytest.mark.parametrize(
    ("overrides", "line"),
    [
        (["cluster.train.gpus_per_node=2", "cluster.train.gres_type=a100"], "#SBATCH --gpus-per-node=a100:2"),
        (["cluster.train.gpus_per_node=2", "cluster.train.gpu_option=gres"], "#SBATCH --gres=gpu:2"),
        (
            [
                "cluster.train.gpus_per_node=1",
                "cluster.train.gres_type=h100",
                "cluster.train.gpu_option=gres",
            ],
            "#SBATCH --gres=gpu:h100:1",
        ),
        (["cluster.train.gpus_per_node=4"], "#SBATCH --gpus-per-node=4"),
        (["cluster.train.constraint=a100&ib"], "#SBATCH --constraint='a100&ib'"),
        (["cluster.train.reservation=maint"], "#SBATCH --reservation=maint"),
        (["cluster.train.qos=high", "cluster.train.account=proj"], "#SBATCH --qos=high"),
        (["cluster.train.sbatch={exclusive: true}"], "#SBATCH --exclusive"),
        (["cluster.train.sbatch={mail-type: 'END,FAIL'}"], "#SBATCH --mail-type=END,FAIL"),
    ],
)
def test_site_options_reach_the_sbatch_file(fake_srun: None, overrides: list[str], line: str) -> None:
    cfg = load_config(overrides=overrides)
    text = executor.sbatch_text(cfg.cluster, "train", FOLDER / "train", 3)
    assert line in text.splitlines()
    gpu_lines = [x for x in text.splitlines() if "--gres" in x or "--gpus" in x]
    assert len(gpu_lines) <= 1, gpu_lines  # GPUs are asked for once, one way
