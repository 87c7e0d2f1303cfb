"""Run a stage's units as jobs and wait for them: in this process, as local subprocesses, or on Slurm.

On Slurm the launcher (this process, with ``run/slurm_stage.py``):

- submits every unit that is neither done nor held by a live job as one array (several when the cluster's
  ``MaxArraySize`` or a QOS submit limit says so), records each unit's job id in the state and saves it before
  it waits, so a launcher killed and started again reattaches to its jobs;
- notices finished jobs from their result files (one directory listing every ``FILE_CHECK_S``) and asks
  Slurm about the others with ONE ``sacct`` call every ``cluster.poll_interval_s``, whatever their number,
  or ONE ``squeue`` call when sacct fails (slurmdbd down, no accounting);
- stops on a job that raised (``StageFailed`` with its error and log), and resubmits a unit confirmed lost
  (ended without a result: cancelled, node failure, out of memory, time limit hit too often, output missing)
  up to ``cluster.max_retries`` times; preempted and timed-out jobs requeue themselves and are only watched;
- writes events (submitted, started, preempted, requeued, retried, ended, failed) and a progress line.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any

from sparta_hpc.cluster import executor
from sparta_hpc.cluster.sacct import JobStatus, Sacct
from sparta_hpc.cluster.squeue import squeue_statuses
from sparta_hpc.config import SpartaConfig
from sparta_hpc.run import progress
from sparta_hpc.run.slurm_stage import FILE_CHECK_S, SlurmStage
from sparta_hpc.store import events as ev
from sparta_hpc.store.progress import Heartbeat
from sparta_hpc.store.rundir import RunDir
from sparta_hpc.store.state import RunState

Log = Callable[[str], None]
Squeue = Callable[[Iterable[str]], dict[str, JobStatus] | None]
__all__ = ["FILE_CHECK_S", "Runner", "StageJobs"]


@dataclass
class StageJobs:
    """One stage's work: the function, the arguments of each unit, and how to tell that a unit is done."""

    t: int
    stage: str
    fn: Callable[..., Any]
    units: dict[str, tuple[Any, ...]]
    """``{unit: args of fn}``; a unit is a shard index, a player name or an evaluation task."""
    is_done: Callable[[str], bool] | None = None
    """Whether a unit's output exists; None when a job's result is its only output (plan's model setup)."""


class Runner:
    """Runs stages' jobs where ``cluster.backend`` says; on Slurm: records, polls, retries, reattaches."""

    def __init__(
        self,
        cfg: SpartaConfig,
        run: RunDir,
        state: RunState,
        log: Log,
        sacct: Sacct | None = None,
        squeue: Squeue = squeue_statuses,
    ) -> None:
        self.cfg = cfg
        self.run_dir = run
        self.state = state
        self.log = log
        self.sacct = sacct or Sacct()
        self.squeue = squeue
        self.heartbeat = Heartbeat(run)
        self.source = "sacct"
        """Where the last answer about jobs came from: ``sacct``, ``squeue``, or ``none`` (both failed)."""
        self.max_array: int | None = None
        """The cluster's ``MaxArraySize`` once read (0: unknown, arrays are not split ahead)."""

    def query(self, job_ids: Iterable[str]) -> tuple[dict[str, JobStatus] | None, str]:
        """Slurm's word on the jobs: sacct's, or squeue's when sacct fails (None: both fail), and which."""
        ids = list(job_ids)
        statuses, source = self.sacct.query(ids), "sacct"
        if statuses is None:
            statuses, source = self.squeue(ids), "squeue"
        source = source if statuses is not None else "none"
        if source != self.source:
            self.log(
                {
                    "sacct": "sacct answers again: jobs are followed through accounting",
                    "squeue": "sacct failed (slurmdbd down or no accounting): jobs are followed with squeue "
                    "and their result files",
                    "none": "neither sacct nor squeue answers: waiting for Slurm",
                }[source]
            )
            self.source = source
        return statuses, source

    def run(self, jobs: StageJobs) -> dict[str, Any]:
        """``{unit: job result}`` of the units that were not done yet (done ones are skipped, not run)."""
        done = jobs.is_done or (lambda unit: False)
        todo = {u: args for u, args in jobs.units.items() if not done(u)}
        if not todo:
            return {}
        self.heartbeat.beat(force=True)
        ev.EventLog(self.run_dir).emit(
            ev.UNITS, iteration=jobs.t, stage=jobs.stage, total=len(jobs.units), todo=list(todo)
        )
        cluster = self.cfg.cluster
        if cluster.backend == "inline":
            return {u: jobs.fn(*args) for u, args in todo.items()}
        folder = self.run_dir.jobs(jobs.t, jobs.stage)
        if cluster.backend == "local":
            results = executor.run_local(
                cluster,
                jobs.stage,
                folder,
                jobs.fn,
                list(todo.values()),
                on_wait=lambda: self._progress(jobs),
            )
            return dict(zip(todo, results, strict=True))
        return SlurmStage(self, jobs, todo, folder).wait()

    def _progress(self, jobs: StageJobs) -> None:
        """The stage's progress line: items done (saved chunks, trained players) of the stage's total."""
        self.heartbeat.beat()
        done, total = progress.stage_progress(self.run_dir, jobs.t, jobs.stage, self.cfg)
        if total:
            progress.update(f"[iter {jobs.t}] {jobs.stage}", done, total)
