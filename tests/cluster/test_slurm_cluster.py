"""submitit 1.5.4 against the real Slurm test cluster (slurm/testcluster.sh): arrays, failures, requeues.

No mocks: every job goes through sbatch, slurmctld, slurmd and sacct. Each test uses its own submitit folder
under tmp_path (job ids restart at 1 after a cluster reset, so a reused folder could hold stale results).
"""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path
from typing import Any, NoReturn

import cloudpickle
import pytest
import submitit
from submitit.core.utils import UncompletedJobError

from tests.slurm_cluster import SlurmCluster

pytestmark = pytest.mark.slurm

# Jobs unpickle their function on the node; pickling this module's code by value spares the job from
# importing ``tests`` (which only works with the repository root as working directory).
cloudpickle.register_pickle_by_value(sys.modules[__name__])


def square(x: int) -> int:
    """A tiny job."""
    return x * x


def sleep_then_return(seconds: float, value: str) -> str:
    """A job that holds its CPUs for a while."""
    time.sleep(seconds)
    return value


def hold(started: str, limit_s: float) -> NoReturn:
    """A job that marks its start, then waits ``limit_s`` and raises: it never ends well by itself.

    A test that cancels it after seeing ``started`` cancels a live job, whatever the timing, and a job the
    cancel missed ends FAILED (not CANCELLED) at the latest after ``limit_s``.
    """
    Path(started).write_text("")
    time.sleep(limit_s)
    raise TimeoutError(f"held {limit_s:.0f} s and not cancelled")


class CountTo(submitit.helpers.Checkpointable):
    """Counts to ``total`` one step per ``step_s``, keeping progress in a file, so a requeued run resumes.

    Each start appends ``<progress at start> <unix time>`` to ``<progress_file>.starts``; the default
    ``Checkpointable.checkpoint`` resubmits the same arguments, and the file carries the state.
    """

    def __call__(self, progress_file: str, total: int, step_s: float) -> int:
        progress_path = Path(progress_file)
        done = int(progress_path.read_text()) if progress_path.exists() else 0
        with open(f"{progress_file}.starts", "a") as starts:
            starts.write(f"{done} {time.time():.1f}\n")
        for step in range(done + 1, total + 1):
            time.sleep(step_s)
            tmp = progress_path.with_suffix(".tmp")
            tmp.write_text(str(step))
            tmp.replace(progress_path)
        return total


def make_executor(
    folder: Path, partition: str, max_num_timeout: int = 3, **parameters: Any
) -> submitit.AutoExecutor:
    """A Slurm executor with small jobs by default (1 CPU, 1 GB, 5 min)."""
    executor = submitit.AutoExecutor(folder=folder, cluster="slurm", slurm_max_num_timeout=max_num_timeout)
    executor.update_parameters(**{"cpus_per_task": 1, "mem_gb": 1, "timeout_min": 5, **parameters})
    executor.update_parameters(slurm_partition=partition)
    return executor


def wait_until(condition: Any, timeout_s: float, what: str) -> None:
    """Poll ``condition()`` every 0.5 s; fail the test after ``timeout_s``."""
    start = time.monotonic()
    while not condition():
        if time.monotonic() - start > timeout_s:
            pytest.fail(f"timed out after {timeout_s:.0f} s waiting for {what}")
        time.sleep(0.5)


def accounting_states(job_id: str) -> list[str]:
    """Every state sacct recorded for the job, requeued runs included (``--duplicates``)."""
    out = subprocess.run(
        ["sacct", "-j", job_id, "--duplicates", "-X", "-n", "-P", "-o", "State"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    return [line.split()[0] for line in out.splitlines() if line.strip()]


def final_accounting_states(job_id: str) -> list[str]:
    """``accounting_states`` once the last run has left RUNNING/COMPLETING: the result pickle is written
    before the job's process exits, so ``job.result()`` can return while sacct still says RUNNING."""
    wait_until(
        lambda: accounting_states(job_id)[-1:] not in (["RUNNING"], ["COMPLETING"], []),
        30,
        f"sacct to record the end of job {job_id}",
    )
    return accounting_states(job_id)


def read_starts(progress_file: Path) -> list[int]:
    """Progress at each start of a CountTo job."""
    starts = Path(f"{progress_file}.starts")
    return [int(line.split()[0]) for line in starts.read_text().splitlines()] if starts.exists() else []


def progress_of(progress_file: Path) -> int:
    return int(progress_file.read_text()) if progress_file.exists() else 0


@pytest.mark.timeout(120)
def test_array_of_four_returns_results(slurm_cluster: SlurmCluster, tmp_path: Path) -> None:
    executor = make_executor(tmp_path, slurm_cluster.default_partition, slurm_array_parallelism=4)
    jobs = executor.map_array(square, [1, 2, 3, 4])

    assert [job.result() for job in jobs] == [1, 4, 9, 16]
    array_id = jobs[0].job_id.split("_")[0]
    assert [job.job_id for job in jobs] == [f"{array_id}_{i}" for i in range(4)]


@pytest.mark.timeout(120)
def test_cancelled_job_is_seen_as_failed(slurm_cluster: SlurmCluster, tmp_path: Path) -> None:
    started = tmp_path / "started"
    executor = make_executor(tmp_path / "jobs", slurm_cluster.default_partition)
    job = executor.submit(hold, str(started), 300)
    try:
        wait_until(started.exists, 60, "the job to start")
        assert not job.done()  # started, and it cannot end by itself before 300 s: alive for the cancel
        job.cancel()  # scancel: the job dies without writing its result pickle
        wait_until(job.done, 30, "submitit to notice the cancelled job (needs sacct/slurmdbd)")

        assert job.state.startswith("CANCELLED"), job.state
        with pytest.raises(UncompletedJobError, match="has not produced any output"):
            job.result()
        assert final_accounting_states(job.job_id) == ["CANCELLED"]
    finally:
        subprocess.run(["scancel", job.job_id], check=False)  # a failed test leaves no job holding a CPU


@pytest.mark.timeout(240)
def test_preempted_job_is_requeued_and_resumes(slurm_cluster: SlurmCluster, tmp_path: Path) -> None:
    if not {"debug", "high"} <= set(slurm_cluster.partitions):
        pytest.skip("needs the test cluster's partitions 'debug' and 'high' (slurm/testcluster.sh)")
    progress = tmp_path / "progress"
    # timeout_min >= 10 so that submitit counts an early USR2 as a preemption, not a timeout.
    low = make_executor(tmp_path / "low", "debug", timeout_min=20, slurm_signal_delay_s=30)
    low_job = low.submit(CountTo(), str(progress), 12, 1.0)
    wait_until(lambda: progress_of(progress) >= 2, 60, "the preemptible job to make progress")

    high = make_executor(tmp_path / "high", "high", cpus_per_task=slurm_cluster.cpus)
    high_job = high.submit(sleep_then_return, 2, "high done")

    assert high_job.result() == "high done"
    assert low_job.result() == 12
    starts = read_starts(progress)
    assert len(starts) >= 2 and starts[1] > 0, f"expected a resumed restart, got starts at {starts}"
    states = final_accounting_states(low_job.job_id)
    assert {"PREEMPTED", "REQUEUED"} & set(states), f"sacct states of the preempted job: {states}"
    assert states[-1] == "COMPLETED"


@pytest.mark.timeout(300)
def test_time_limit_requeues_from_checkpoint(slurm_cluster: SlurmCluster, tmp_path: Path) -> None:
    progress = tmp_path / "progress"
    # A 1-minute limit for ~50 s of work. slurmctld checks time limits every 30 s and so sends the --signal up
    # to 30 s early: USR2 comes 15-45 s after the start with signal_delay_s=15, so the first run is always
    # interrupted and every run makes >= ~13 steps. With timeout_min < 10 submitit counts every USR2 as a
    # timeout; slurm_max_num_timeout=5 (default 3) leaves room for an unlucky phase of those 30-s checks.
    executor = make_executor(
        tmp_path,
        slurm_cluster.default_partition,
        timeout_min=1,
        slurm_signal_delay_s=15,
        max_num_timeout=5,
    )
    job = executor.submit(CountTo(), str(progress), 50, 1.0)
    assert job.result() == 50
    starts = read_starts(progress)
    assert len(starts) >= 2 and starts[1] > 0, f"expected a resumed restart, got starts at {starts}"
    states = final_accounting_states(job.job_id)
    assert "REQUEUED" in states and states[-1] == "COMPLETED", f"sacct states: {states}"
