"""What Slurm accepts in one submission: the array size limit, and why a submission was refused.

Two limits can refuse a whole array: ``MaxArraySize`` (slurm.conf; an array's indices must stay below it)
and the submit limits of a QOS or association (``MaxSubmitJobsPerUser``, ``MaxSubmitJobs``...), which count
every array task as one job. The first is read from ``scontrol show config`` before submitting; the second is
learnt from sbatch's refusal (reading it needs accounting, which may be down), and the launcher then submits
smaller arrays, and holds the rest back until its queued jobs end.
"""

from __future__ import annotations

import re
import subprocess

_MAX_ARRAY = re.compile(r"^\s*MaxArraySize\s*=\s*(\d+)\s*$", re.MULTILINE)
SUBMIT_LIMIT_MARKERS = ("MaxSubmitJob", "job submit limit", "MaxSubmitJobs")
"""Words of sbatch's refusal when a QOS or association submit limit is reached (Slurm 22.05 and later)."""
ARRAY_SIZE_MARKERS = ("Invalid job array specification", "MaxArraySize")
"""Words of sbatch's refusal of an array larger than ``MaxArraySize``."""


def max_array_size(command: str = "scontrol", timeout_s: float = 60.0) -> int | None:
    """The cluster's ``MaxArraySize`` (an array may hold at most this many tasks, indices from 0), or None
    when scontrol does not say (then arrays are not split ahead; a refusal still splits them)."""
    try:
        proc = subprocess.run(
            [command, "show", "config"], capture_output=True, text=True, timeout=timeout_s, check=False
        )
    except (OSError, subprocess.TimeoutExpired):
        return None
    match = _MAX_ARRAY.search(proc.stdout) if proc.returncode == 0 else None
    return int(match.group(1)) if match else None


def sbatch_reason(stderr: str) -> str:
    """Slurm's words from sbatch's error output: its ``sbatch: error:`` lines, prefix removed, in one line."""
    lines = [line.strip() for line in stderr.splitlines() if line.strip()]
    errors = [line.split("error:", 1)[1].strip() for line in lines if "error:" in line]
    return "; ".join(errors or lines) or "sbatch failed without a message"


def is_submit_limit(reason: str) -> bool:
    """Whether a refusal is a QOS/association submit limit (fewer tasks will be accepted later)."""
    return any(marker.lower() in reason.lower() for marker in SUBMIT_LIMIT_MARKERS)


def is_array_size(reason: str) -> bool:
    """Whether a refusal is an array larger than the cluster (or QOS) allows."""
    return any(marker.lower() in reason.lower() for marker in ARRAY_SIZE_MARKERS)


def share_of(parallelism: int, size: int, total: int) -> int:
    """An array's part of ``parallelism`` (``array_parallelism``) when ``total`` tasks are split into arrays:
    proportional to its ``size``, at least 1, so that the arrays together run about as many tasks at once as
    one array would."""
    return max(1, parallelism * size // total)
