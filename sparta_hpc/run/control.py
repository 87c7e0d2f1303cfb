"""Control a Slurm run from any login shell: detach its launcher as a job, cancel every job of a run.

``--detach`` (``launcher.start``) submits the launcher itself as a small requeueable CPU job
(``cluster.launcher`` resources), so the user may log out; a preempted or timed-out launcher job is
requeued and reattaches to the run's jobs. ``sparta-hpc cancel RUN_DIR`` stops the launcher first (a cancel
file it checks every second, and scancel of its job), so it resubmits nothing, then cancels every live job
whose id the state recorded.
"""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from sparta_hpc.cluster.sacct import scancel
from sparta_hpc.cluster.squeue import job_statuses
from sparta_hpc.config import SpartaConfig
from sparta_hpc.errors import LockHeld, SlurmError, StateError
from sparta_hpc.files import read_json, write_json
from sparta_hpc.run.scheduler import FILE_CHECK_S
from sparta_hpc.store.rundir import RunDir
from sparta_hpc.store.state import LauncherLock, load_state


def detached_job(run: RunDir) -> str | None:
    """The job id of the run's detached launcher, if one was submitted."""
    return read_json(run.launcher_job_file)["job_id"] if run.launcher_job_file.exists() else None


def detach(cfg: SpartaConfig, run: RunDir, entry: Callable[[Any], int], spec: Any) -> str:
    """Submit the launcher as a Slurm job running ``entry(spec)``; returns its job id.

    Refuses while another launcher drives the run: a live process holding the lock, or a live launcher job.
    ``launcher.start`` has checked that ``cfg`` runs on Slurm.
    """
    from sparta_hpc.cluster import executor

    with LauncherLock(run):  # raises LockHeld, naming the holder, while a launcher process drives the run
        pass
    previous = detached_job(run)
    if previous is not None:
        status = (job_statuses([previous]) or {}).get(previous)
        if status is not None and status.live:
            raise LockHeld(f"{run.root} is driven by launcher job {previous} ({status.state.lower()})")
    job_id = executor.submit_slurm(cfg.cluster, "launcher", run.launcher_jobs, entry, [(spec,)])[0]
    record = {"job_id": job_id, "submitted": time.time(), "spec": dataclasses.asdict(spec)}
    write_json(run.launcher_job_file, record)
    return job_id


def cancel(root: Path) -> list[str]:
    """Stop the run's launcher, then cancel every live job of the run; returns the ids cancelled.

    The cancel file stops a launcher process at its next look (within a second), wherever it runs; its job,
    if detached, is cancelled first. A second pass catches jobs submitted while this ran.
    """
    run = RunDir(root)
    if load_state(run) is None:
        raise StateError(f"{run.root} has no state file: not a run directory, or nothing was submitted yet")
    write_json(run.cancel_file, {"time": time.time()})
    cancelled: list[str] = []
    for pass_ in range(2):
        if pass_:
            time.sleep(2 * FILE_CHECK_S)
        state = load_state(run)
        assert state is not None
        launchers = sorted({j for j in (state.launcher_job, detached_job(run)) if j})
        statuses = job_statuses([*launchers, *state.job_ids()])
        if statuses is None:
            raise SlurmError("sacct and squeue failed: cannot tell which jobs still run; try again")
        for group in (launchers, state.job_ids()):  # the launcher first: it might resubmit
            ids = [j for j in group if j not in cancelled and j in statuses and statuses[j].live]
            error = scancel(ids)
            if error:
                raise SlurmError(f"scancel {' '.join(ids)} failed: {error}")
            cancelled += ids
    return cancelled
