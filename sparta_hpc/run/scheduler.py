"""Run a stage's units as jobs and wait for them: in this process, as local subprocesses, or on Slurm.

On Slurm the launcher (this process):

- submits every unit that is neither done nor held by a live job as ONE array, records each unit's job id in
  the state and saves it before it waits, so a launcher killed and started again reattaches to its jobs;
- notices finished jobs from their result files (one directory listing every ``FILE_CHECK_S``) and asks
  Slurm about the others with ONE ``sacct`` call every ``cluster.poll_interval_s``, whatever their number;
- stops on a job that raised (``StageFailed`` with its error and log), and resubmits a unit whose job ended
  without a result (cancelled, node failure, out of memory, time limit hit too often) up to
  ``cluster.max_retries`` times; preempted and timed-out jobs requeue themselves and are only watched;
- writes events (submitted, started, preempted, requeued, retried, ended, failed) and a progress line.
"""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from sparta_hpc.cluster import executor
from sparta_hpc.cluster.executor import ERROR, NOT_REQUEUED, SUCCESS
from sparta_hpc.cluster.sacct import INFRASTRUCTURE, JobStatus, Sacct, array_id
from sparta_hpc.config import SpartaConfig
from sparta_hpc.errors import RunCancelled, StageFailed
from sparta_hpc.run import progress
from sparta_hpc.store import events as ev
from sparta_hpc.store.progress import Heartbeat
from sparta_hpc.store.rundir import RunDir
from sparta_hpc.store.state import RunState, save_state

Log = Callable[[str], None]

FILE_CHECK_S = 1.0
"""Seconds between two looks for finished jobs' result files (a directory listing, no Slurm query)."""
CONFIRM_POLLS = 2
"""Polls that must see a job ended without a result before it counts as lost (result files may lag on NFS)."""
UNKNOWN_PATIENCE_S = 300.0
"""Seconds a recorded job may stay unknown to sacct (not yet accounted) before it counts as lost."""
SIBLING_PATIENCE_S = 60.0
"""The same for an array task missing while its siblings are listed (cancelled while pending)."""


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
        self, cfg: SpartaConfig, run: RunDir, state: RunState, log: Log, sacct: Sacct | None = None
    ) -> None:
        self.cfg = cfg
        self.run_dir = run
        self.state = state
        self.log = log
        self.sacct = sacct or Sacct()
        self.heartbeat = Heartbeat(run)

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
        return _SlurmStage(self, jobs, todo, folder).wait()

    def _progress(self, jobs: StageJobs) -> None:
        """The stage's progress line: items done (saved chunks, trained players) of the stage's total."""
        self.heartbeat.beat()
        done, total = progress.stage_progress(self.run_dir, jobs.t, jobs.stage, self.cfg)
        if total:
            progress.update(f"[iter {jobs.t}] {jobs.stage}", done, total)


@dataclass
class _Seen:
    """What the launcher last saw of one job."""

    runs: int = 1
    running: bool = False
    ended_polls: int = 0
    unknown_since: float | None = None


@dataclass
class _SlurmStage:
    """One stage's jobs on Slurm, from submission (or reattachment) to the last result."""

    runner: Runner
    jobs: StageJobs
    todo: dict[str, tuple[Any, ...]]
    folder: Path
    watch: dict[str, str] = field(default_factory=dict)
    """``{unit: job id}`` of the jobs being waited for."""
    retry: dict[str, str] = field(default_factory=dict)
    """``{unit: why}`` of the units to submit again after this poll."""
    results: dict[str, Any] = field(default_factory=dict)
    seen: dict[str, _Seen] = field(default_factory=dict)
    counts: Counter[str] = field(default_factory=Counter)
    last_counts: str = ""

    def __post_init__(self) -> None:
        self.book = self.runner.state.stage_jobs(self.jobs.t, self.jobs.stage)
        self.events = ev.EventLog(self.runner.run_dir)
        self.cluster = self.runner.cfg.cluster
        self.where = f"[iter {self.jobs.t}] {self.jobs.stage:<8}"

    def wait(self) -> dict[str, Any]:
        """Reattach or submit, then wait until every unit has its result."""
        start, calls = time.monotonic(), self.runner.sacct.calls
        self._reattach()
        self._submit([u for u in self.todo if u not in self.watch and u not in self.results], {})
        next_poll = time.monotonic() + self.cluster.poll_interval_s
        while self.watch or self.retry:
            time.sleep(min(FILE_CHECK_S, self.cluster.poll_interval_s))
            self._check_cancelled()
            self._collect()
            if self.watch and time.monotonic() >= next_poll:
                self._poll()
                next_poll = time.monotonic() + self.cluster.poll_interval_s
            self._submit(list(self.retry), dict(self.retry))
            self._progress()
        queries = self.runner.sacct.calls - calls
        self.runner.log(f"{self.where} jobs done: {queries} sacct queries in {time.monotonic() - start:.1f}s")
        return self.results

    # ------------------------------------------------------------ submitting

    def _reattach(self) -> None:
        """Wait again for the recorded jobs that still live; collect the finished; resubmit the ended."""
        recorded = {u: self.book[u]["job_id"] for u in self.todo if u in self.book}
        if not recorded:
            return
        statuses = self.runner.sacct.query(recorded.values()) or {}  # unknown (or sacct down): assume live
        finished = executor.finished_job_ids(self.folder, list(recorded.values()))
        attached = []
        for unit, job_id in recorded.items():
            outcome = executor.job_outcome(self.folder, job_id) if job_id in finished else None
            status = statuses.get(job_id)
            if outcome is not None and outcome[0] == SUCCESS and self._output_exists(unit):
                self.results[unit] = outcome[1]
            elif outcome is None and (status is None or status.live):
                self.watch[unit] = job_id
                attached.append(job_id)
            else:  # ended (a raising job's cause may be fixed now): a fresh start, with fresh retries
                del self.book[unit]
        if attached:
            self.runner.log(f"{self.where} reattached to {len(attached)} live job(s): {', '.join(attached)}")

    def _submit(self, units: list[str], reasons: dict[str, str]) -> None:
        """Submit ``units`` as one array; record and save their job ids before anything else."""
        if not units:
            return
        self._check_cancelled()
        args = [self.todo[u] for u in units]
        ids = executor.submit_slurm(self.cluster, self.jobs.stage, self.folder, self.jobs.fn, args)
        previous = {u: self.book.get(u, {}) for u in units}
        for unit, job_id in zip(units, ids, strict=True):
            self.book[unit] = {"job_id": job_id, "attempts": previous[unit].get("attempts", 0) + 1}
            self.watch[unit] = job_id
            self.retry.pop(unit, None)
        save_state(self.runner.run_dir, self.runner.state)  # before waiting: a new launcher reattaches
        t, stage, first = self.jobs.t, self.jobs.stage, array_id(ids[0])
        self.events.emit(
            ev.SUBMITTED, iteration=t, stage=stage, job_id=first, num_tasks=len(ids), units=units
        )
        for unit in reasons:
            attempt = self.book[unit]["attempts"]
            self.events.emit(
                ev.RETRIED, iteration=t, stage=stage, job_id=self.book[unit]["job_id"], unit=unit,
                previous=previous[unit].get("job_id"), attempt=attempt, reason=reasons[unit],
            )  # fmt: skip
            self.runner.log(f"{self.where} unit {unit}: {reasons[unit]}; resubmitted (attempt {attempt})")
        self.runner.log(f"{self.where} submitted job {first} ({len(ids)} task(s): {', '.join(units)})")

    # ------------------------------------------------------------ waiting

    def _collect(self) -> None:
        """Take the result of every watched job whose result file exists."""
        finished = executor.finished_job_ids(self.folder, list(self.watch.values()))
        for unit, job_id in list(self.watch.items()):
            if job_id not in finished:
                continue
            outcome = executor.job_outcome(self.folder, job_id)
            assert outcome is not None  # the file exists; a job writes it atomically
            del self.watch[unit]
            status, value = outcome
            if status == SUCCESS and self._output_exists(unit):
                self.results[unit] = value
                self.events.emit(ev.ENDED, iteration=self.jobs.t, stage=self.jobs.stage, job_id=job_id)
            elif status == ERROR and NOT_REQUEUED not in value:
                self._fail(unit, job_id, executor.last_line(value))
            elif status == ERROR:
                self._lost(unit, job_id, INFRASTRUCTURE["TIMEOUT"])
            else:
                self._lost(unit, job_id, "finished but its output is missing")

    def _poll(self) -> None:
        """One sacct call for every watched job: events for starts and requeues; ended jobs are lost."""
        statuses = self.runner.sacct.query(self.watch.values())
        if statuses is None:
            self.runner.log(f"{self.where} sacct failed; asking again in {self.cluster.poll_interval_s:g}s")
            return
        split_arrays = {array_id(j) for j in statuses if "_" in j}
        self.counts = Counter()
        for unit, job_id in list(self.watch.items()):
            seen = self.seen.setdefault(job_id, _Seen(runs=self.book[unit].get("runs", 1)))
            status = statuses.get(job_id)
            if status is None:
                status = self._unlisted(job_id, seen, statuses, split_arrays)
                if status is None:
                    continue
            else:
                seen.unknown_since = None
            self._note(unit, job_id, status, seen)
            if status.live:
                seen.ended_polls = 0
                continue
            seen.ended_polls += 1
            if seen.ended_polls >= CONFIRM_POLLS and executor.job_outcome(self.folder, job_id) is None:
                del self.watch[unit]
                self._lost(unit, job_id, INFRASTRUCTURE.get(status.state, status.state.lower()))
        line = progress.job_counts_line(self.jobs.stage, self.counts)
        if line != self.last_counts:
            self.runner.log(f"[iter {self.jobs.t}] {line}")
            self.last_counts = line

    def _unlisted(
        self, job_id: str, seen: _Seen, statuses: dict[str, JobStatus], split_arrays: set[str]
    ) -> JobStatus | None:
        """The status of a job sacct lists no line for: None (wait) for a while, then MISSING (lost).

        slurmdbd learns of submissions and starts seconds late, and Slurm 22.05 shows an array whose tasks
        have not started as one line under the bare array id (whose state, e.g. COMPLETED while the tasks
        run, says nothing about them). A task absent beside listed siblings was cancelled while pending, or
        has just started: it is lost after ``SIBLING_PATIENCE_S``; a job unknown altogether after
        ``UNKNOWN_PATIENCE_S`` (at least 5 polls each way).
        """
        siblings = "_" in job_id and array_id(job_id) in split_arrays and array_id(job_id) not in statuses
        patience = SIBLING_PATIENCE_S if siblings else UNKNOWN_PATIENCE_S
        now = time.monotonic()
        seen.unknown_since = seen.unknown_since or now
        if now - seen.unknown_since < max(patience, 5 * self.cluster.poll_interval_s):
            self.counts["pending"] += 1
            return None
        return JobStatus(state="MISSING", runs=1)

    def _note(self, unit: str, job_id: str, status: JobStatus, seen: _Seen) -> None:
        """Count the job's state; write events for a start and for every requeue since the last poll."""
        t, stage = self.jobs.t, self.jobs.stage
        requeued = status.runs > 1 and status.live
        key = "requeued" if requeued else "running" if status.state == "RUNNING" else "pending"
        self.counts[key if status.live else "done"] += 1
        for state in status.interrupted[seen.runs - 1 :]:
            self.events.emit(ev.PREEMPTED, iteration=t, stage=stage, job_id=job_id, state=state)
            self.events.emit(ev.REQUEUED, iteration=t, stage=stage, job_id=job_id)
            self.runner.log(
                f"{self.where} job {job_id} {state.lower()}: requeued, resumes from saved progress"
            )
            seen.running = False
        if status.runs > seen.runs:  # recorded, so that a restarted launcher does not report them again
            seen.runs = self.book[unit]["runs"] = status.runs
            save_state(self.runner.run_dir, self.runner.state)
        if status.state == "RUNNING" and not seen.running:
            self.events.emit(ev.STARTED, iteration=t, stage=stage, job_id=job_id)
            seen.running = True

    def _lost(self, unit: str, job_id: str, why: str) -> None:
        """A job ended without a result: submit the unit again, unless it has used up its retries."""
        attempts = self.book[unit]["attempts"]
        if attempts > self.cluster.max_retries:
            error = f"{why}; gave up on unit {unit} after {attempts} attempt(s) (cluster.max_retries)"
            self._fail(unit, job_id, error)
        self.retry[unit] = f"job {job_id} {why}"

    def _fail(self, unit: str, job_id: str, error: str) -> None:
        log = str(executor.job_log(self.folder, job_id))
        self.events.emit(
            ev.FAILED,
            iteration=self.jobs.t,
            stage=self.jobs.stage,
            job_id=job_id,
            unit=unit,
            error=error,
            log=log,
        )
        raise StageFailed(self.jobs.stage, job_id, log, error)

    def _check_cancelled(self) -> None:
        if self.runner.run_dir.cancel_file.exists():
            raise RunCancelled(
                f"{self.runner.run_dir.root}: cancelled by `sparta-hpc cancel`; run again to resume"
            )

    def _output_exists(self, unit: str) -> bool:
        return self.jobs.is_done is None or self.jobs.is_done(unit)

    def _progress(self) -> None:
        self.runner.heartbeat.beat()
        done, total = progress.stage_progress(
            self.runner.run_dir, self.jobs.t, self.jobs.stage, self.runner.cfg
        )
        if total == 0:
            done, total = len(self.todo) - len(self.watch) - len(self.retry), len(self.todo)
        progress.update(f"[iter {self.jobs.t}] {self.jobs.stage}", done, total)
