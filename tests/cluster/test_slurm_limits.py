"""Arrays against the real test cluster's limits (slurm/testcluster.sh), set low for the test and restored
after it: ``MaxArraySize`` (slurm.conf, slurmctld restarted) and a QOS ``MaxSubmitJobsPerUser``
(``sacctmgr``, enforced with ``AccountingStorageEnforce=limits``). The stage's function is ``abs``: each job
is a Python start and nothing else, so the test is about submission, not work."""

from __future__ import annotations

import os
import re
import shutil
import signal
import subprocess
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

from sparta_hpc.config import load_config
from sparta_hpc.errors import SubmissionRejected
from sparta_hpc.run.scheduler import Runner, StageJobs
from sparta_hpc.store.events import read_events
from sparta_hpc.store.rundir import RunDir
from sparta_hpc.store.state import RunState
from tests.slurm_cluster import SlurmCluster

SLURM_CONF = Path("/etc/slurm/slurm.conf")
CTLD_PID = Path("/run/slurm/slurmctld.pid")
MARKER = "# Written by sparta-hpc slurm/testcluster.sh"
MAX_ARRAY, MAX_SUBMIT, UNITS = 3, 4, 9

pytestmark = [pytest.mark.slurm]


def _run(*cmd: str) -> str:
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=60, check=False)
    assert proc.returncode == 0, f"{' '.join(cmd)}: {proc.stdout}{proc.stderr}"
    return proc.stdout


def restart_slurmctld() -> None:
    """Restart slurmctld by the pid in its pid file (``scontrol reconfigure`` applies neither MaxArraySize nor
    AccountingStorageEnforce in Slurm 22.05); queued jobs stay. Started from Python, whose children inherit
    no file descriptor of this process (such as the flock of /tmp/slurm-tests.lock that wraps Slurm tests)."""
    pid = int(CTLD_PID.read_text().strip())
    os.kill(pid, signal.SIGTERM)
    deadline = time.monotonic() + 60
    while Path(f"/proc/{pid}").exists() and time.monotonic() < deadline:
        time.sleep(0.1)
    subprocess.run(["slurmctld"], check=True, timeout=60)
    while time.monotonic() < deadline:
        sinfo = subprocess.run(["sinfo", "-h", "-N", "-o", "%T"], capture_output=True, text=True, timeout=30)
        if sinfo.returncode == 0 and sinfo.stdout.split()[:1] in (["idle"], ["mixed"], ["allocated"]):
            return
        time.sleep(0.2)
    raise AssertionError("slurmctld did not come back within 60 s")


@contextmanager
def low_limits(max_array: int, max_submit: int) -> Iterator[None]:
    """The cluster with ``MaxArraySize=max_array`` and the default QOS ``normal`` refusing more than
    ``max_submit`` queued jobs per user (enforced); everything restored on exit, whatever happens."""
    original = SLURM_CONF.read_text()
    keep = [
        line
        for line in original.splitlines()
        if not line.startswith(("MaxArraySize=", "AccountingStorageEnforce="))
    ]
    try:
        SLURM_CONF.write_text(
            "\n".join([*keep, f"MaxArraySize={max_array}", "AccountingStorageEnforce=limits"]) + "\n"
        )
        _run("sacctmgr", "-i", "modify", "qos", "normal", "set", f"MaxSubmitJobsPerUser={max_submit}")
        restart_slurmctld()
        config = _run("scontrol", "show", "config")
        assert re.search(rf"^MaxArraySize\s+= {max_array}$", config, re.MULTILINE), config
        yield
    finally:
        SLURM_CONF.write_text(original)
        subprocess.run(
            ["sacctmgr", "-i", "modify", "qos", "normal", "set", "MaxSubmitJobsPerUser=-1"], check=False
        )
        restart_slurmctld()


@pytest.fixture
def test_cluster(slurm_cluster: SlurmCluster) -> SlurmCluster:
    ours = SLURM_CONF.exists() and SLURM_CONF.read_text().startswith(MARKER) and CTLD_PID.exists()
    if not ours or shutil.which("sacctmgr") is None:
        pytest.skip("changes the limits of slurm/testcluster.sh's cluster only")
    if _run("squeue", "-h", "--me").strip():
        pytest.skip("jobs of this user are queued: a submit limit test needs an empty queue")
    return slurm_cluster


def runner(tmp_path: Path, log: list[str], *overrides: str) -> Runner:
    cfg = load_config(
        None, ["cluster.backend=slurm", "cluster.poll_interval_s=1", *overrides], preset="local-slurm"
    )
    return Runner(cfg, RunDir(tmp_path / "run"), RunState(config_hash="x", iterations_total=1), log.append)


def test_arrays_fit_max_array_size_and_a_qos_submit_limit(test_cluster: SlurmCluster, tmp_path: Path) -> None:
    """9 units, MaxArraySize 3, at most 4 queued jobs: every unit runs once in arrays of at most 3 tasks,
    none is lost or retried, and the QOS refusal is logged in Slurm's words (its raw form would stop the
    stage). Then a submission Slurm refuses for another reason stops the stage with that reason."""
    log: list[str] = []
    with low_limits(MAX_ARRAY, MAX_SUBMIT):
        ex = runner(tmp_path, log)
        units = {str(i): (-i,) for i in range(UNITS)}
        results = ex.run(StageJobs(0, "generate", abs, units))
        with pytest.raises(SubmissionRejected) as refused:
            runner(tmp_path / "other", [], "cluster.evaluate.partition=nope").run(
                StageJobs(0, "evaluate", abs, {"0": (-1,)})
            )

    assert results == {str(i): i for i in range(UNITS)}
    submitted = [e for e in read_events(ex.run_dir) if e["kind"] == "submitted"]
    sizes = [e["num_tasks"] for e in submitted]
    assert sum(sizes) == UNITS and max(sizes) <= MAX_ARRAY, sizes
    assert not [e for e in read_events(ex.run_dir) if e["kind"] == "retried"]
    held = [line for line in log if "Slurm refused more jobs" in line]
    assert held and "QOSMaxSubmitJobPerUserLimit" in held[0], log
    assert ex.max_array == MAX_ARRAY
    assert "invalid partition" in refused.value.reason.lower(), refused.value.reason
    assert str(refused.value).startswith("evaluate: Slurm refused to queue 1 job(s): ")
