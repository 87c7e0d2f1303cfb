"""Reading squeue (the launcher's view of jobs without accounting) and what limits Slurm puts on arrays."""

from __future__ import annotations

from pathlib import Path

from sparta_hpc.cluster.limits import is_array_size, is_submit_limit, max_array_size, sbatch_reason, share_of
from sparta_hpc.cluster.sacct import JobStatus
from sparta_hpc.cluster.squeue import parse_squeue, squeue_statuses


def fake(tmp_path: Path, name: str, body: str) -> str:
    path = tmp_path / name
    path.write_text(f'#!/bin/sh\necho "$@" >> {tmp_path / "calls"}\n{body}\n')
    path.chmod(0o755)
    return str(path)


def test_parse_squeue_one_line_per_task_with_restarts() -> None:
    text = "81_0|RUNNING|0|\n81_1|PENDING|2|\n90|COMPLETING|0|\n\ngarbage\n"
    statuses = parse_squeue(text)
    assert statuses == {
        "81_0": JobStatus(state="RUNNING", runs=1),
        "81_1": JobStatus(state="PENDING", runs=3, interrupted=("REQUEUED", "REQUEUED")),
        "90": JobStatus(state="COMPLETING", runs=1),
    }
    assert all(s.live for s in statuses.values())


def test_squeue_statuses_keeps_the_asked_arrays_in_one_call(tmp_path: Path) -> None:
    command = fake(tmp_path, "squeue", "echo '81_0|RUNNING|0|'; echo '82_3|PENDING|0|'; echo '7|RUNNING|0|'")
    assert squeue_statuses(["81_0", "81_5", "7"], command=command) == {
        "81_0": JobStatus(state="RUNNING", runs=1),
        "7": JobStatus(state="RUNNING", runs=1),
    }
    assert (tmp_path / "calls").read_text().split() == [
        "--me",
        "-h",
        "-r",
        "-O",
        "JobArrayID:|,State:|,RestartCnt:|",
    ]
    assert len(squeue_statuses(None, command=command) or {}) == 3


def test_a_failing_squeue_is_none(tmp_path: Path) -> None:
    command = fake(
        tmp_path, "squeue", "echo 'slurm_load_jobs error: Unable to contact slurm controller' >&2; exit 1"
    )
    assert squeue_statuses(["1"], command=command) is None
    assert squeue_statuses(["1"], command=str(tmp_path / "missing")) is None


def test_max_array_size_from_scontrol(tmp_path: Path) -> None:
    command = fake(tmp_path, "scontrol", "echo 'MaxArraySize            = 4'; echo 'MaxJobCount = 20000'")
    assert max_array_size(command) == 4
    assert max_array_size(fake(tmp_path, "scontrol2", "exit 1")) is None


def test_sbatch_refusals_are_read_in_slurms_words() -> None:
    qos = (
        "sbatch: error: QOSMaxSubmitJobPerUserLimit\n"
        "sbatch: error: Batch job submission failed: Job violates accounting/QOS policy (job submit limit, "
        "user's size and/or time limits)\n"
    )
    reason = sbatch_reason(qos)
    assert reason.startswith("QOSMaxSubmitJobPerUserLimit; Batch job submission failed: Job violates")
    assert is_submit_limit(reason) and not is_array_size(reason)
    size = sbatch_reason("sbatch: error: Batch job submission failed: Invalid job array specification")
    assert is_array_size(size) and not is_submit_limit(size)
    other = sbatch_reason(
        "sbatch: error: invalid partition specified: nope\n"
        "sbatch: error: Batch job submission failed: Invalid partition name specified"
    )
    assert (
        other
        == "invalid partition specified: nope; Batch job submission failed: Invalid partition name specified"
    )
    assert not is_submit_limit(other) and not is_array_size(other)
    assert sbatch_reason("") == "sbatch failed without a message"


def test_split_arrays_share_the_parallelism() -> None:
    assert [share_of(256, size, 2500) for size in (1000, 1000, 500)] == [102, 102, 51]
    assert share_of(2, 1, 10) == 1
