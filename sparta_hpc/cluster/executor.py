"""Where jobs run: in this process, in local subprocesses, or on Slurm. The only module importing submitit.

On Slurm every job is a ``Resumable``: on the USR2 that Slurm sends before a preemption or a time limit,
submitit requeues it with the same arguments, and the job function continues from the progress it saved on
disk (finished chunks, trainer checkpoints). Waiting for Slurm jobs is ``scheduling.py``'s part.
"""

from __future__ import annotations

import os
import pickle
import sys
import threading
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import submitit
from submitit.core.utils import FailedJobError, JobPaths, UncompletedJobError

from sparta_hpc.cluster.limits import sbatch_reason
from sparta_hpc.cluster.resources import ClusterConfig
from sparta_hpc.errors import StageFailed, SubmissionRejected
from sparta_hpc.processes import ProcessIdentity, process_alive, process_identity

ERROR, SUCCESS = "error", "success"
"""The two outcomes a job's result file can hold."""
NOT_REQUEUED = "UncompletedJobError"
"""In a job's error: submitit gave up requeueing it (time limit hit too often), no error of our code."""
LOCAL_WAIT_S = 0.5
"""How often the launcher looks at local jobs (and redraws the progress line)."""


class Resumable(submitit.helpers.Checkpointable):
    """Calls ``fn(*args)``; requeued with the same arguments on Slurm's USR2 (preemption or time limit).

    The progress lives on disk already, so the inherited ``checkpoint`` (resubmit the same call) is all a
    requeue needs. Nothing is saved inside the signal handler: a DPO step interrupted half-way would not
    resume bit-identically, so a preempted DPO job loses at most ``train.save_steps`` steps.

    ``launcher`` (local jobs only): the launcher process's identity; the job ends itself when that process
    is gone, so a killed launcher leaves no local job writing into the run directory behind it.
    """

    def __init__(self, fn: Callable[..., Any], launcher: ProcessIdentity | None = None) -> None:
        self.fn = fn
        self.launcher = launcher

    def __call__(self, *args: Any) -> Any:
        launcher = getattr(self, "launcher", None)  # absent from jobs pickled by older versions
        if launcher is not None:
            _end_with(launcher)
        return self.fn(*args)


LAUNCHER_GONE_EXIT = 75
"""Exit status of a local job that ended itself because its launcher is gone."""


def _end_with(launcher: ProcessIdentity) -> None:
    """Start a daemon thread that ends this process as soon as the launcher process is gone."""

    def watch() -> None:
        while process_alive(launcher):
            time.sleep(LOCAL_WAIT_S)
        print(
            f"sparta-hpc: launcher process {launcher[0]} is gone; this local job ends (the next launcher "
            "runs its unit again)",
            file=sys.stderr,
            flush=True,
        )
        os._exit(LAUNCHER_GONE_EXIT)

    threading.Thread(target=watch, name="launcher-watch", daemon=True).start()


# ---------------------------------------------------------------- Slurm


def slurm_parameters(cluster: ClusterConfig, stage: str) -> dict[str, Any]:
    """submitit ``AutoExecutor`` arguments of a stage's jobs, each derived from its ``StageResources``."""
    res = cluster.resources(stage)
    params: dict[str, Any] = {
        "name": stage,
        "timeout_min": res.timeout_min,
        "nodes": res.nodes,
        "tasks_per_node": res.tasks_per_node,
        "cpus_per_task": res.cpus_per_task,
        "slurm_signal_delay_s": cluster.signal_delay_s,
        "slurm_array_parallelism": res.array_parallelism,
        "slurm_additional_parameters": {"requeue": True, **res.sbatch},
    }
    if res.gpus_per_node:
        params["gpus_per_node"] = res.gpus_per_node
    if res.mem_gb is not None:
        params["mem_gb"] = res.mem_gb
    for key in ("partition", "account", "qos", "constraint", "exclude"):
        if getattr(res, key) is not None:
            params[f"slurm_{key}"] = getattr(res, key)
    if res.setup:
        params["slurm_setup"] = list(res.setup)
    return params


def _slurm_executor(cluster: ClusterConfig, stage: str, folder: Path) -> submitit.AutoExecutor:
    executor = submitit.AutoExecutor(
        folder=folder, cluster="slurm", slurm_max_num_timeout=cluster.max_num_timeout
    )
    executor.update_parameters(**slurm_parameters(cluster, stage))
    return executor


def submit_slurm(
    cluster: ClusterConfig,
    stage: str,
    folder: Path,
    fn: Callable[..., Any],
    args_list: Sequence[tuple[Any, ...]],
    parallelism: int | None = None,
) -> list[str]:
    """Submit ``fn(*args)`` for every args tuple as one Slurm array (a plain job for one); ids in order.

    ``parallelism``: the array's share of ``array_parallelism`` when a stage's units are split into several
    arrays. ``clean_env`` hides the SLURM_* variables of a launcher that itself runs as a Slurm job
    (``--detach``). Raises ``SubmissionRejected`` with Slurm's reason when sbatch refuses the array.
    """
    executor = _slurm_executor(cluster, stage, folder)
    if parallelism is not None:
        executor.update_parameters(slurm_array_parallelism=parallelism)
    try:
        with submitit.helpers.clean_env():
            jobs = executor.map_array(Resumable(fn), *zip(*args_list, strict=True))
    except FailedJobError as e:  # submitit's wrapper of sbatch's error output
        raise SubmissionRejected(stage, len(args_list), sbatch_reason(str(e))) from None
    return [str(job.job_id) for job in jobs]


def sbatch_text(cluster: ClusterConfig, stage: str, folder: Path, num_tasks: int) -> str:
    """The sbatch file ``submit_slurm`` writes for ``num_tasks`` tasks of a stage (for review and tests)."""
    from submitit.slurm import slurm as submitit_slurm

    slurm: Any = _slurm_executor(cluster, stage, folder)._executor
    params = dict(slurm.parameters, map_count=num_tasks) if num_tasks > 1 else slurm.parameters
    # submitit 1.5.4 has no public renderer; this is the call its SlurmExecutor makes for sbatch
    return submitit_slurm._make_sbatch_string(
        command=slurm._submitit_command_str, folder=slurm.folder, **params
    )


def finished_job_ids(folder: Path, job_ids: Sequence[str]) -> set[str]:
    """The jobs among ``job_ids`` whose result file exists (one directory listing, not one stat per job)."""
    try:
        names = set(os.listdir(folder))
    except FileNotFoundError:
        return set()
    return {j for j in job_ids if JobPaths(folder, j).result_pickle.name in names}


def job_outcome(folder: Path, job_id: str) -> tuple[str, Any] | None:
    """``("success", result)`` or ``("error", traceback text)`` from the job's result file; None if absent."""
    path = JobPaths(folder, job_id).result_pickle
    try:
        with open(path, "rb") as f:
            outcome = pickle.load(f)
    except FileNotFoundError:
        return None
    return outcome[0], outcome[1]


def job_log(folder: Path, job_id: str) -> Path:
    """The job's stderr file (Python tracebacks and submitit's own messages)."""
    return JobPaths(folder, job_id).stderr


def last_line(text: str) -> str:
    """The last non-blank line of an error text (its exception line)."""
    lines = [line for line in text.splitlines() if line.strip()]
    return lines[-1] if lines else "unknown error"


# ---------------------------------------------------------------- local


def run_local(
    cluster: ClusterConfig,
    stage: str,
    folder: Path,
    fn: Callable[..., Any],
    args_list: Sequence[tuple[Any, ...]],
    on_wait: Callable[[], None] | None = None,
) -> list[Any]:
    """Run ``fn(*args)`` for every args tuple as local submitit subprocesses and wait; results in order.

    ``on_wait`` is called about twice a second while jobs run (the progress line). The jobs end themselves
    when this process dies (``Resumable.launcher``).
    """
    res = cluster.resources(stage)
    executor = submitit.AutoExecutor(folder=folder, cluster="local")
    executor.update_parameters(name=stage, timeout_min=res.timeout_min, cpus_per_task=res.cpus_per_task)
    local_fn = Resumable(fn, launcher=process_identity(os.getpid()))
    jobs = executor.map_array(local_fn, *zip(*args_list, strict=True))
    while not all(job.done() for job in jobs):
        if on_wait is not None:
            on_wait()
        time.sleep(LOCAL_WAIT_S)
    if on_wait is not None:
        on_wait()
    results = []
    for job in jobs:
        try:
            results.append(job.result())
        except UncompletedJobError:  # no result file: the last line of its log would be any progress bar
            error = f"ended without a result: its process was killed or died ({LOST_LOCAL_JOB})"
            raise StageFailed(stage, str(job.job_id), str(job.paths.stderr), error) from None
        except Exception as e:  # submitit re-raises the job's error with its traceback text
            raise StageFailed(stage, str(job.job_id), str(job.paths.stderr), last_line(str(e))) from None
    return results


LOST_LOCAL_JOB = "SIGKILL, out of memory, or its launcher gone"
"""Why a local job ends without a result, in the launcher's error."""
