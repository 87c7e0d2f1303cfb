"""Live queue states of many jobs with ONE ``squeue`` call (``sparta-hpc status``; no accounting needed).

The query names each array once (``-j 812,813``) and asks for one line per task (``-r``), so its length does
not grow with the arrays. A job squeue does not list has left the queue (ended, or never existed): the
caller tells which from its result files. Only the Slurm client command is used, never submitit.
"""

from __future__ import annotations

import subprocess
from collections.abc import Iterable
from dataclasses import dataclass

FORMAT = "%i|%T|%r"
"""Job id (``812_3`` for an array task), state (PENDING, RUNNING, ...), reason (Priority, Resources, None)."""
UNKNOWN_ID = "Invalid job id specified"
"""squeue's error when the only job it was asked about has left the queue (Slurm 22.05: exit status 1)."""


@dataclass(frozen=True)
class QueueState:
    """What squeue says of one job or array task."""

    state: str
    reason: str

    def to_dict(self) -> dict[str, str]:
        return {"state": self.state, "reason": self.reason}


def _array(job_id: str) -> str:
    return job_id.split("_", 1)[0]


def _expand(job_id: str) -> list[str]:
    """``812_[1-3,7%2]`` -> ``812_1, 812_2, 812_3, 812_7``; any other id is itself (``-r`` avoids ranges,
    but a version that still prints one is read the same)."""
    base, sep, rest = job_id.partition("_[")
    if not sep or not rest.endswith("]"):
        return [job_id]
    out = []
    for part in rest[:-1].split("%")[0].split(","):
        first, _, last = part.partition("-")
        if not first.isdigit() or not (last or first).isdigit():
            return [job_id]
        out += [f"{base}_{i}" for i in range(int(first), int(last or first) + 1)]
    return out


def parse_squeue(text: str) -> dict[str, QueueState]:
    """``{job id: QueueState}`` from ``squeue -h -r -o '%i|%T|%r'`` output."""
    out = {}
    for line in text.splitlines():
        parts = line.strip().split("|")
        if len(parts) < 3 or not parts[0]:
            continue
        for job_id in _expand(parts[0]):
            out[job_id] = QueueState(state=parts[1].strip(), reason=parts[2].strip())
    return out


def squeue_states(
    job_ids: Iterable[str], command: str = "squeue", timeout_s: float = 30.0
) -> dict[str, QueueState] | None:
    """The queue states of every listed job (and of every task of the listed arrays) in one squeue call;
    ``{}`` when none is queued, None when squeue failed or is not installed."""
    arrays = sorted({_array(j) for j in job_ids if j}, key=lambda a: (len(a), a))
    if not arrays:
        return {}
    cmd = [command, "-h", "-r", "-o", FORMAT, "-j", ",".join(arrays)]
    try:
        proc = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout_s, check=False)
    except (OSError, subprocess.TimeoutExpired):
        return None
    if proc.returncode != 0:
        return {} if UNKNOWN_ID in proc.stderr else None
    return parse_squeue(proc.stdout)
