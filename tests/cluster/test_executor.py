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
        f"==> {stage} ({n} tasks)\n{executor.sbatch_text(cfg.cluster, stage, FOLDER / stage, n)}\n"
        for stage, n in TASKS.items()
    ).replace(sys.executable, "PYTHON")
    record = DATA / "sbatch_a100x16.txt"
    regenerate = f"{REGENERATE}=1 python -m pytest {Path(__file__).relative_to(ROOT)}"
    if os.environ.get(REGENERATE) == "1":
        record.write_text(text)
        pytest.fail(f"{record} rewritten ({REGENERATE}=1): review `git diff {record}`, commit it, run again")
    assert record.exists(), f"{record} is missing: restore it from git, or regenerate: {regenerate}"
    assert record.read_text() == text, f"sbatch text changed; if this is normal, regenerate: {regenerate}"


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
        "cluster.train.sbatch={mail-type: FAIL, reservation: ai}",
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
        "slurm_additional_parameters": {"requeue": True, "mail-type": "FAIL", "reservation": "ai"},
    }


def test_plan_model_setup_runs_with_the_launcher_resources() -> None:
    cfg = load_config(overrides=["cluster.launcher.cpus_per_task=3"])
    assert executor.slurm_parameters(cfg.cluster, "plan")["cpus_per_task"] == 3
    assert executor.slurm_parameters(cfg.cluster, "plan")["name"] == "plan"
