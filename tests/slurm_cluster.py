"""Pytest plugin: the ``slurm_cluster`` fixture and the CI rule for tests marked ``slurm``.

Registered from ``tests/conftest.py`` (``pytest_plugins = ["tests.slurm_cluster"]``).

``slurm_cluster`` (session scope) gives a usable Slurm cluster with accounting (submitit polls ``sacct``):

1. ``slurm/testcluster.sh status`` passes (or, without that script's checks, ``sinfo`` shows a usable node
   and ``sacct`` answers): the running cluster is used as it is;
2. else, as root on Debian, ``slurm/testcluster.sh install`` then ``start`` bring up the single-node test
   cluster (about 15 s with the packages to install, 3 s without) and leave it running for later sessions;
3. else the test is skipped with the reason.

With ``CI=true`` or ``SPARTA_REQUIRE_SLURM=1`` a missing cluster fails the test instead of skipping it, and
the run fails if any test marked ``slurm`` was skipped for any other reason.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path

import pytest

TESTCLUSTER_SH = Path(__file__).resolve().parent.parent / "slurm" / "testcluster.sh"
USABLE_NODE_STATES = ("idle", "mixed", "allocated", "completing")
_SKIPPED_SLURM_TESTS = pytest.StashKey[list[str]]()


@dataclass(frozen=True, kw_only=True)
class SlurmCluster:
    """What a test needs to know about the cluster it runs on."""

    node: str
    """Name of the (first) node."""
    cpus: int
    """CPUs of that node: a job asking for all of them must wait for, or preempt, every other job."""
    partitions: tuple[str, ...]
    """Partition names; the test cluster has ``debug`` (default, preemptible) and ``high`` (preempts it)."""
    default_partition: str
    """The partition jobs go to when they name none."""


def slurm_required() -> bool:
    """True when a skipped Slurm test must fail the run (``CI=true`` or ``SPARTA_REQUIRE_SLURM=1``)."""
    return os.environ.get("CI", "").lower() == "true" or os.environ.get("SPARTA_REQUIRE_SLURM") == "1"


def _run(cmd: list[str], timeout_s: float) -> subprocess.CompletedProcess[str]:
    return subprocess.run(cmd, capture_output=True, text=True, timeout=timeout_s, check=False)


def _cluster_problem() -> str | None:
    """None if the cluster answers, has a usable node and accounting; else what is wrong."""
    if any(shutil.which(cmd) is None for cmd in ("scontrol", "sinfo", "sacct")):
        return "Slurm client commands (scontrol, sinfo, sacct) not found"
    try:
        # Fails in milliseconds when no controller answers, where sinfo retries for 9 s.
        ping = _run(["scontrol", "ping"], timeout_s=20)
        if ping.returncode != 0 and " is UP" not in ping.stdout:
            return f"slurmctld does not answer: {(ping.stdout + ping.stderr).strip()}"
        sinfo = _run(["sinfo", "-h", "-N", "-o", "%T"], timeout_s=20)
        if sinfo.returncode != 0:
            return f"sinfo failed: {sinfo.stderr.strip() or sinfo.stdout.strip()}"
        states = sinfo.stdout.split()
        if not any(state in USABLE_NODE_STATES for state in states):
            return f"no usable Slurm node (node states: {states or 'none'})"
        sacct = _run(["sacct", "-n", "-X", "-S", "now"], timeout_s=20)
        if sacct.returncode != 0:
            return f"sacct (accounting, needed by submitit) failed: {sacct.stderr.strip()}"
    except subprocess.TimeoutExpired as exc:
        return f"{exc.cmd[0]} did not answer within {exc.timeout:.0f} s"
    return None


def _can_start_test_cluster() -> str | None:
    """None if this machine may run slurm/testcluster.sh; else why not."""
    if os.geteuid() != 0:
        return "not root, so the test cluster cannot be installed or started (testcluster.sh needs root)"
    if not Path("/etc/debian_version").exists():
        return "not Debian, so slurm/testcluster.sh cannot install the test cluster"
    if not TESTCLUSTER_SH.exists():
        return f"{TESTCLUSTER_SH} is missing"
    return None


def _start_test_cluster() -> str | None:
    """Run testcluster.sh install + start; None on success, else the failure with the script's output."""
    for command in ("install", "start"):
        try:
            proc = _run(["bash", str(TESTCLUSTER_SH), command], timeout_s=600)
        except subprocess.TimeoutExpired:
            return f"slurm/testcluster.sh {command} did not finish within 600 s"
        if proc.returncode != 0:
            output = (proc.stdout + proc.stderr).strip()[-3000:]
            return f"slurm/testcluster.sh {command} failed (exit {proc.returncode}):\n{output}"
    return None


def _describe_cluster() -> SlurmCluster:
    nodes = _run(["sinfo", "-h", "-N", "-o", "%N %c %T"], timeout_s=20).stdout.split("\n")
    usable = [line.split() for line in nodes if line.split() and line.split()[2] in USABLE_NODE_STATES]
    node, cpus, _ = usable[0]
    partitions = _run(["sinfo", "-h", "-o", "%P"], timeout_s=20).stdout.split()
    default = next((p.rstrip("*") for p in partitions if p.endswith("*")), partitions[0])
    return SlurmCluster(
        node=node,
        cpus=int(cpus),
        partitions=tuple(p.rstrip("*") for p in partitions),
        default_partition=default,
    )


def _unavailable(reason: str) -> None:
    """Skip, or fail where a Slurm cluster is required (CI)."""
    if slurm_required():
        pytest.fail(f"Slurm cluster required (CI=true or SPARTA_REQUIRE_SLURM=1) but unavailable: {reason}")
    pytest.skip(f"no usable Slurm cluster: {reason}")


@pytest.fixture(scope="session")
def slurm_cluster() -> SlurmCluster:
    """A running Slurm cluster with accounting; starts the local test cluster when it can (see module doc)."""
    problem = _cluster_problem()
    if problem is not None:
        cannot_start = _can_start_test_cluster()
        if cannot_start is not None:
            _unavailable(f"{problem}; {cannot_start}")
        start_failure = _start_test_cluster()
        if start_failure is not None:
            _unavailable(f"{problem}; starting the test cluster failed: {start_failure}")
        problem = _cluster_problem()
        if problem is not None:
            _unavailable(f"slurm/testcluster.sh start succeeded but the cluster is still unusable: {problem}")
    return _describe_cluster()


def pytest_configure(config: pytest.Config) -> None:
    config.stash[_SKIPPED_SLURM_TESTS] = []


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]) -> pytest.TestReport:
    report: pytest.TestReport = yield
    if report.skipped and item.get_closest_marker("slurm") is not None:
        item.config.stash[_SKIPPED_SLURM_TESTS].append(item.nodeid)
    return report


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    skipped = session.config.stash.get(_SKIPPED_SLURM_TESTS, [])
    if skipped and slurm_required():
        session.exitstatus = pytest.ExitCode.TESTS_FAILED


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    skipped = terminalreporter.config.stash.get(_SKIPPED_SLURM_TESTS, [])
    if skipped and slurm_required():
        title = "skipped Slurm tests fail this run (CI=true or SPARTA_REQUIRE_SLURM=1)"
        terminalreporter.section(title, red=True)
        for nodeid in skipped:
            terminalreporter.line(nodeid, red=True)
