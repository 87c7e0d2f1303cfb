"""Reading sacct: array ranges, requeued runs, and one call per poll whatever the number of tasks."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from sparta_hpc.cluster.sacct import JobStatus, Sacct, parse_sacct


def test_parse_expands_pending_ranges_and_keeps_every_run_of_a_requeued_job() -> None:
    text = "\n".join(
        [
            "81_0|RUNNING",
            "81_2|RUNNING",
            "81_[2-4,7%2]|PENDING",  # 81_2 is being split off: its own line wins
            "82_0|PREEMPTED",
            "82_0|REQUEUED",
            "82_0|COMPLETED",
            "83_1|REQUEUED",
            "83_1|PENDING",
            "84|CANCELLED by 0",
            "",
        ]
    )
    statuses = parse_sacct(text)
    assert statuses["81_2"] == JobStatus(state="RUNNING", runs=1)
    assert [statuses[f"81_{i}"].state for i in (3, 4, 7)] == ["PENDING"] * 3
    assert "81_5" not in statuses
    assert statuses["82_0"] == JobStatus(state="COMPLETED", runs=3, interrupted=("PREEMPTED", "REQUEUED"))
    assert statuses["83_1"].live and statuses["83_1"].runs == 2
    assert statuses["84"].state == "CANCELLED" and not statuses["84"].live


@pytest.mark.parametrize("num_tasks", [1, 10, 1000])
def test_one_sacct_call_per_poll_names_each_array_once(tmp_path: Path, num_tasks: int) -> None:
    calls = tmp_path / "calls"
    fake = tmp_path / "sacct"
    lines = "".join(f"echo '90_{i}|RUNNING'\n" for i in range(num_tasks))
    fake.write_text(f'#!/bin/sh\necho "$@" >> {calls}\n{lines}echo "91|PENDING"\n')
    fake.chmod(0o755)
    sacct = Sacct(command=str(fake))
    ids = [f"90_{i}" for i in range(num_tasks)] + ["91"]
    for poll in range(1, 4):
        statuses = sacct.query(ids)
        assert statuses is not None and len(statuses) == num_tasks + 1
        assert sacct.calls == poll
    argv = calls.read_text().splitlines()
    assert len(argv) == 3
    assert all(line.endswith("-j 90,91") for line in argv), argv[0]


def test_a_failing_sacct_is_reported_as_none(tmp_path: Path) -> None:
    fake = tmp_path / "sacct"
    fake.write_text("#!/bin/sh\necho 'slurmdbd down' >&2\nexit 1\n")
    fake.chmod(0o755)
    assert Sacct(command=str(fake)).query(["5_1"]) is None
    assert Sacct(command=os.devnull + "/missing").query(["5_1"]) is None
