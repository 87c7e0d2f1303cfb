"""Local jobs die with their launcher: a SIGKILLed launcher leaves no job writing into the run directory."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from sparta_hpc.processes import process_alive, process_identity
from tests.run.faults import alive, job_pids, wait_for

ROOT = Path(__file__).resolve().parents[2]
LAUNCHER = """
import sys, time
from pathlib import Path
from sparta_hpc.cluster.executor import run_local
from sparta_hpc.cluster.resources import ClusterConfig
run_local(ClusterConfig(), "generate", Path(sys.argv[1]), time.sleep, [(120,), (120,)])
"""


@pytest.mark.skipif(not Path("/proc/self/stat").exists(), reason="needs /proc (Linux)")
def test_local_jobs_end_when_their_launcher_is_killed(tmp_path: Path) -> None:
    folder = tmp_path / "jobs"
    launcher = subprocess.Popen([sys.executable, "-c", LAUNCHER, str(folder)], cwd=ROOT)
    try:
        wait_for(lambda: len(job_pids(folder)) >= 4, 60, "2 controllers and 2 tasks to start")
        time.sleep(2)  # the tasks are inside time.sleep(120), their watch threads running
        jobs = job_pids(folder)
        assert len(alive(jobs)) >= 4
        launcher.send_signal(signal.SIGKILL)
        launcher.wait()
        wait_for(lambda: not alive(jobs), 15, f"the jobs {jobs} to end after their launcher died")
    finally:
        launcher.kill()
        for pid in alive(job_pids(folder)):
            os.kill(pid, signal.SIGKILL)
    logs = sorted(folder.glob("*_log.err"))
    assert logs and all("launcher process" in log.read_text() for log in logs)


def test_a_zombie_or_reused_pid_is_not_alive() -> None:
    me = process_identity(os.getpid())
    assert process_alive(me)
    assert not process_alive((os.getpid(), "0"))  # same pid, another start time: a reused pid
    child = subprocess.Popen([sys.executable, "-c", "pass"])
    identity = process_identity(child.pid)
    wait_for(lambda: not process_alive(identity), 10, "the exited child to count as gone while a zombie")
    child.wait()
    assert not process_alive(identity)


def _die(_: object) -> None:
    os.kill(os.getpid(), signal.SIGKILL)


@pytest.mark.slow
def test_a_local_job_killed_before_its_result_fails_its_stage_saying_so(tmp_path: Path) -> None:
    """Not with the last line of its log (a progress bar, as often as not)."""
    from sparta_hpc.cluster.executor import run_local
    from sparta_hpc.cluster.resources import ClusterConfig
    from sparta_hpc.errors import StageFailed

    with pytest.raises(StageFailed, match="ended without a result: its process was killed or died"):
        run_local(ClusterConfig(), "generate", tmp_path / "jobs", _die, [(1,)])
