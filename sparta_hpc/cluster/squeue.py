"""Ask slurmctld (not accounting) about jobs: one ``squeue`` call for every job of this user.

``squeue`` answers from the controller's memory, so it works when ``sacct`` does not (slurmdbd down, or a
cluster without accounting). It knows only jobs that are queued, running, or ended within the last
``MinJobAge`` seconds: a job it does not list has ended (or was never submitted). A job's earlier runs are
seen only as a count (``RestartCnt``), not by their end states as ``sacct --duplicates`` gives them.

``squeue_statuses`` is the one reader: the launcher's wait loop falls back to it when sacct fails, and
``sparta-hpc status`` can show live states with it.
"""

from __future__ import annotations

import subprocess
from collections.abc import Iterable

from sparta_hpc.cluster.sacct import JobStatus, Sacct, array_id

FORMAT = "JobArrayID:|,State:|,RestartCnt:|"
"""``812_3|RUNNING|1|``: one line per job or array task (``-r`` splits pending array ranges)."""


def parse_squeue(text: str) -> dict[str, JobStatus]:
    """Statuses from ``squeue -h -r -O JobArrayID:|,State:|,RestartCnt:|`` output, keyed by job id."""
    out = {}
    for line in text.splitlines():
        parts = [p.strip() for p in line.split("|")]
        if len(parts) < 3 or not parts[0] or not parts[1]:
            continue
        restarts = int(parts[2]) if parts[2].isdigit() else 0
        out[parts[0]] = JobStatus(state=parts[1], runs=1 + restarts, interrupted=("REQUEUED",) * restarts)
    return out


def squeue_statuses(
    job_ids: Iterable[str] | None = None, command: str = "squeue", timeout_s: float = 60.0
) -> dict[str, JobStatus] | None:
    """Statuses of this user's jobs in one call (only those of ``job_ids``' arrays, when given); None if
    squeue failed (slurmctld does not answer). A job id absent from the answer is no longer in the queue."""
    cmd = [command, "--me", "-h", "-r", "-O", FORMAT]
    try:
        proc = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout_s, check=False)
    except (OSError, subprocess.TimeoutExpired):
        return None
    if proc.returncode != 0:
        return None
    statuses = parse_squeue(proc.stdout)
    if job_ids is None:
        return statuses
    arrays = {array_id(j) for j in job_ids}
    return {j: s for j, s in statuses.items() if array_id(j) in arrays}


def job_statuses(job_ids: Iterable[str], sacct: Sacct | None = None) -> dict[str, JobStatus] | None:
    """sacct's statuses of the jobs, or squeue's when sacct fails; None when both fail. A job absent from
    the answer is not queued or running (squeue) or not known yet (sacct)."""
    ids = list(job_ids)
    statuses = (sacct or Sacct()).query(ids)
    return statuses if statuses is not None else squeue_statuses(ids)
