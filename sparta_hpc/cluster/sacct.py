"""Ask Slurm about many jobs with one command: one ``sacct`` call per poll, whatever the number of tasks.

The query names each array once (``-j 812,813``), never its tasks, so its length does not grow with the
array; ``--duplicates`` returns every run of a requeued job, which is how an interruption (preemption, time
limit) between two polls is still seen. Only the Slurm client commands are used, never submitit.
"""

from __future__ import annotations

import re
import subprocess
from collections.abc import Iterable
from dataclasses import dataclass

LIVE = frozenset(
    {
        "PENDING",
        "CONFIGURING",
        "RUNNING",
        "COMPLETING",
        "REQUEUED",
        "REQUEUE_HOLD",
        "REQUEUE_FED",
        "RESIZING",
        "SUSPENDED",
        "SIGNALING",
        "STAGE_OUT",
    }
)
"""States of a job that is queued or running (it may still write its result)."""
INFRASTRUCTURE = {
    "CANCELLED": "cancelled (scancel or an administrator)",
    "TIMEOUT": "hit its time limit too often",
    "PREEMPTED": "preempted and not requeued",
    "NODE_FAIL": "its node failed",
    "BOOT_FAIL": "its node failed to boot",
    "OUT_OF_MEMORY": "ran out of memory",
    "DEADLINE": "missed its deadline",
    "FAILED": "died without writing a result (killed, or the Python environment is broken)",
    "COMPLETED": "ended without writing a result",
    "MISSING": "is unknown to Slurm's accounting",
}
"""Ends without a result that are no error of the job's code, and what they mean: the shard is resubmitted."""
FIELDS = "JobID,State"
_RANGE = re.compile(r"^(\d+)_\[([^\]]+)\]$")


@dataclass(frozen=True, kw_only=True)
class JobStatus:
    """What sacct knows of one job or array task."""

    state: str
    """State of the current (latest) run, e.g. PENDING, RUNNING, COMPLETED, CANCELLED."""
    runs: int
    """Runs recorded so far: 1 + the times it was requeued."""
    interrupted: tuple[str, ...] = ()
    """States of its earlier runs (REQUEUED, PREEMPTED, TIMEOUT, ...)."""

    @property
    def live(self) -> bool:
        return self.state in LIVE


def array_id(job_id: str) -> str:
    """``"812_3"`` -> ``"812"``; a plain job id is its own array id."""
    return job_id.split("_", 1)[0]


def _expand(job_id: str) -> list[str]:
    """``812_[1-3,7%2]`` -> ``812_1, 812_2, 812_3, 812_7`` (pending tasks not yet split off); else itself."""
    match = _RANGE.match(job_id)
    if match is None:
        return [job_id]
    base, spec = match.group(1), match.group(2).split("%")[0]
    out = []
    for part in spec.split(","):
        first, _, last = part.partition("-")
        out += [f"{base}_{i}" for i in range(int(first), int(last or first) + 1)]
    return out


def parse_sacct(text: str) -> dict[str, JobStatus]:
    """Statuses from ``sacct -X -D -n -P -o JobID,State`` output, keyed by job id (``812`` or ``812_3``).

    Runs of one job come in the order sacct lists them; the current run is its queued or running one if any,
    else the last (REQUEUED is the end of an earlier run, or the current state for a moment after a requeue).
    A task's own lines win over a range line (``812_[3-5]``) that still lists it while it is split off.
    """
    own: dict[str, list[str]] = {}
    ranged: dict[str, list[str]] = {}
    for line in text.splitlines():
        parts = line.strip().split("|")
        if len(parts) < 2 or not parts[0]:
            continue
        state = parts[1].split()[0] if parts[1].split() else "UNKNOWN"
        ids = _expand(parts[0])
        for job_id in ids:
            (own if ids == [parts[0]] else ranged).setdefault(job_id, []).append(state)
    out = {}
    for job_id, states in ({**ranged, **own}).items():
        live = [i for i, s in enumerate(states) if s in LIVE and s != "REQUEUED"]
        current = live[-1] if live else len(states) - 1
        earlier = tuple(s for i, s in enumerate(states) if i < current and s not in LIVE - {"REQUEUED"})
        out[job_id] = JobStatus(state=states[current], runs=1 + len(earlier), interrupted=earlier)
    return out


class Sacct:
    """Batched ``sacct`` queries; ``calls`` counts them (the launcher's load on slurmctld/slurmdbd)."""

    def __init__(self, command: str = "sacct", timeout_s: float = 60.0) -> None:
        self.command = command
        self.timeout_s = timeout_s
        self.calls = 0

    def query(self, job_ids: Iterable[str]) -> dict[str, JobStatus] | None:
        """Statuses of every task of the given jobs in one call; None if sacct failed (try again later)."""
        arrays = sorted({array_id(j) for j in job_ids}, key=lambda a: (len(a), a))
        if not arrays:
            return {}
        self.calls += 1
        cmd = [self.command, "-X", "-D", "-n", "-P", "-o", FIELDS, "-j", ",".join(arrays)]
        try:
            proc = subprocess.run(cmd, capture_output=True, text=True, timeout=self.timeout_s, check=False)
        except (OSError, subprocess.TimeoutExpired):
            return None
        if proc.returncode != 0:
            return None
        return parse_sacct(proc.stdout)


def scancel(job_ids: Iterable[str], command: str = "scancel") -> str:
    """Cancel jobs or array tasks with one ``scancel`` call; returns its error output ('' on success)."""
    ids = sorted(set(job_ids))
    if not ids:
        return ""
    proc = subprocess.run([command, *ids], capture_output=True, text=True, timeout=60, check=False)
    return proc.stderr.strip() if proc.returncode != 0 else ""
