"""Reading squeue for ``sparta-hpc status``: one call for every job of a run, whatever the number of tasks;
a job that left the queue is absent; a failing squeue is None. Then the same on the real test cluster."""

from __future__ import annotations

import os
import subprocess
import time
from pathlib import Path

import pytest

from sparta_hpc.cluster.squeue_states import QueueState, parse_squeue, squeue_states
from tests.slurm_cluster import SlurmCluster


def test_parse_reads_tasks_ranges_and_reasons() -> None:
    text = "81_0|RUNNING|None\n81_[2-3%1]|PENDING|JobArrayTaskLimit\n84|PENDING|Resources\nnoise\n\n"
    states = parse_squeue(text)
    assert states == {
        "81_0": QueueState("RUNNING", "None"),
        "81_2": QueueState("PENDING", "JobArrayTaskLimit"),
        "81_3": QueueState("PENDING", "JobArrayTaskLimit"),
        "84": QueueState("PENDING", "Resources"),
    }


@pytest.mark.parametrize("num_tasks", [1, 1000])
def test_one_call_names_each_array_once(tmp_path: Path, num_tasks: int) -> None:
    calls, fake = tmp_path / "calls", tmp_path / "squeue"
    lines = "".join(f"echo '90_{i}|RUNNING|None'\n" for i in range(num_tasks))
    fake.write_text(f'#!/bin/sh\necho "$@" >> {calls}\n{lines}\n')
    fake.chmod(0o755)
    states = squeue_states([f"90_{i}" for i in range(num_tasks)] + ["91"], command=str(fake))
    assert states is not None and len(states) == num_tasks
    assert calls.read_text().splitlines() == ["-h -r -o %i|%T|%r -j 90,91"]
    assert squeue_states([], command=str(fake)) == {}
    assert len(calls.read_text().splitlines()) == 1, "no job ids: no call"


def test_a_failing_squeue_is_none_and_an_unknown_single_job_is_not_queued(tmp_path: Path) -> None:
    fake = tmp_path / "squeue"
    fake.write_text(
        "#!/bin/sh\necho 'slurm_load_jobs error: Unable to contact slurm controller' >&2\nexit 1\n"
    )
    fake.chmod(0o755)
    assert squeue_states(["5_1"], command=str(fake)) is None
    assert squeue_states(["5_1"], command=os.devnull + "/missing") is None
    fake.write_text("#!/bin/sh\necho 'slurm_load_jobs error: Invalid job id specified' >&2\nexit 1\n")
    assert squeue_states(["5"], command=str(fake)) == {}


@pytest.mark.slurm
def test_real_squeue_gives_every_task_state_in_one_call(slurm_cluster: SlurmCluster, tmp_path: Path) -> None:
    """An array of 3 tasks, at most 1 at a time (1 running, 2 held back by the array limit), and a job that
    has ended: one squeue call lists the three tasks and not the ended job; an ended job alone is ``{}``."""
    release = tmp_path / "release"
    hold = f"until test -e {release}; do sleep 0.2; done"

    def sbatch(*args: str) -> str:
        cmd = ["sbatch", "--parsable", "-p", slurm_cluster.default_partition, "-c", "1", "-o", os.devnull]
        return subprocess.run([*cmd, *args], capture_output=True, text=True, check=True).stdout.strip()

    ended = sbatch("--wrap", "true")
    array = sbatch("--array=0-2%1", "-t", "5", "--wrap", hold)
    try:
        deadline = time.monotonic() + 60
        states: dict[str, QueueState] | None = {}
        while time.monotonic() < deadline:
            states = squeue_states([ended, f"{array}_0", f"{array}_2"])
            if (
                states is not None
                and ended not in states
                and states.get(f"{array}_0", QueueState("", "")).state == "RUNNING"
            ):
                break
            time.sleep(0.5)
        assert states is not None
        assert {j: s.state for j, s in states.items()} == {
            f"{array}_0": "RUNNING",
            f"{array}_1": "PENDING",
            f"{array}_2": "PENDING",
        }
        assert states[f"{array}_1"].reason == "JobArrayTaskLimit"
        assert squeue_states([ended]) == {}, "squeue's 'Invalid job id' for a job that left the queue"
    finally:
        subprocess.run(["scancel", array], check=False)
        release.touch()
