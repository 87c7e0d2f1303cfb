"""Where jobs run: in this process, in local subprocesses, or on Slurm. The only module importing submitit."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from sparta_hpc.config import ClusterConfig


class StageFailed(RuntimeError):
    """A job of a stage raised; carries the stage, the job id and the path of its log."""

    def __init__(self, stage: str, job_id: str, log: str, error: str) -> None:
        super().__init__(f"{stage} job {job_id} failed: {error}\n  log: {log}")
        self.stage = stage
        self.job_id = job_id
        self.log = log


def run_jobs(
    cluster: ClusterConfig,
    folder: Path,
    stage: str,
    fn: Callable[..., Any],
    args_list: Sequence[tuple[Any, ...]],
) -> list[Any]:
    """Run ``fn(*args)`` for every args tuple as one array of jobs and wait for all; results in order."""
    if not args_list:
        return []
    if cluster.backend == "inline":
        return [fn(*args) for args in args_list]
    import submitit

    executor = submitit.AutoExecutor(folder=folder, cluster=cluster.backend)
    executor.update_parameters(
        name=stage,
        timeout_min=cluster.timeout_min,
        cpus_per_task=cluster.cpus_per_task,
    )
    jobs = executor.map_array(fn, *zip(*args_list, strict=True))
    results = []
    for job in jobs:
        try:
            results.append(job.result())
        except Exception as e:  # submitit re-raises the job's error with its traceback text
            raise StageFailed(stage, str(job.job_id), str(job.paths.stderr), _last_line(e)) from None
    return results


def _last_line(e: Exception) -> str:
    lines = [line for line in str(e).splitlines() if line.strip()]
    return lines[-1] if lines else type(e).__name__
