"""One stage's jobs on Slurm, from submission (or reattachment) to the last result (``Runner.run`` on Slurm).

- Submits the units as arrays no larger than ``MaxArraySize``; when a QOS or association submit limit refuses
  them, as smaller arrays, holding the rest back until queued jobs end (``_submit``). Any other refusal stops
  the stage with Slurm's reason (``SubmissionRejected``).
- Records each unit's job id in the state and saves it before waiting: a restarted launcher reattaches.
- Notices finished jobs from their result files (one directory listing every ``FILE_CHECK_S``) and asks
  Slurm about the others in ONE call every ``cluster.poll_interval_s``: ``sacct``, or ``squeue`` when sacct
  fails (slurmdbd down, no accounting): a job squeue no longer lists has ended.
- **One rule for "this unit is lost"**: a job ended without a result, a job missing from Slurm's answers, a
  result whose output is not there (yet: an NFS client's cache), a job submitit stopped requeueing: the same
  evidence must be seen at ``CONFIRM_POLLS`` polls in a row, and is checked once more just before the unit is
  resubmitted (``_poll``). A job that raised stops the stage at once.
"""

from __future__ import annotations

import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from sparta_hpc.cluster import executor
from sparta_hpc.cluster.executor import ERROR, NOT_REQUEUED, SUCCESS
from sparta_hpc.cluster.limits import is_array_size, is_submit_limit, max_array_size, share_of
from sparta_hpc.cluster.sacct import INFRASTRUCTURE, JobStatus, array_id
from sparta_hpc.errors import RunCancelled, StageFailed, SubmissionRejected
from sparta_hpc.run import progress
from sparta_hpc.store import events as ev
from sparta_hpc.store.state import save_state

if TYPE_CHECKING:
    from sparta_hpc.run.scheduler import Runner, StageJobs

FILE_CHECK_S = 1.0
"""Seconds between two looks for finished jobs' result files (a directory listing, no Slurm query)."""
CONFIRM_POLLS = 2
"""Polls in a row that must see a unit lost before it is resubmitted (files may lag on NFS)."""
UNKNOWN_PATIENCE_S = 300.0
"""Seconds a recorded job may stay unknown to sacct (not yet accounted) before it counts as lost."""
SIBLING_PATIENCE_S = 60.0
"""The same for an array task missing while its siblings are listed (cancelled while pending)."""
GONE = "GONE"
"""The state of a job that squeue no longer lists (it ended longer than ``MinJobAge`` ago)."""
WHY = {
    **INFRASTRUCTURE,
    GONE: "left Slurm's queue without writing a result",
    "OUTPUT": "finished but its output is missing",
    NOT_REQUEUED: INFRASTRUCTURE["TIMEOUT"],
}
"""Why a unit is lost, by the evidence (a Slurm state, or what its result file says)."""


@dataclass
class _Seen:
    """What the launcher last saw of one job."""

    runs: int = 1
    running: bool = False
    lost_polls: int = 0
    unknown_since: float | None = None


@dataclass
class SlurmStage:
    """One stage's jobs on Slurm, from submission (or reattachment) to the last result."""

    runner: Runner
    jobs: StageJobs
    todo: dict[str, tuple[Any, ...]]
    folder: Path
    watch: dict[str, str] = field(default_factory=dict)
    """``{unit: job id}`` of the jobs being waited for."""
    retry: dict[str, str | None] = field(default_factory=dict)
    """``{unit: why}`` of the units to submit (again: why is None for a first submission held back)."""
    fresh: set[str] = field(default_factory=set)
    """Units found at reattachment: if their job turns out lost, they start again with fresh retries."""
    results: dict[str, Any] = field(default_factory=dict)
    seen: dict[str, _Seen] = field(default_factory=dict)
    counts: Counter[str] = field(default_factory=Counter)
    last_counts: str = ""
    held_at: int | None = None
    """Jobs watched when Slurm last refused a submission for a submit limit (None: no refusal pending)."""

    def __post_init__(self) -> None:
        self.book = self.runner.state.stage_jobs(self.jobs.t, self.jobs.stage)
        self.events = ev.EventLog(self.runner.run_dir)
        self.cluster = self.runner.cfg.cluster
        self.where = f"[iter {self.jobs.t}] {self.jobs.stage:<8}"

    def wait(self) -> dict[str, Any]:
        """Reattach or submit, then wait until every unit has its result."""
        start, calls = time.monotonic(), self.runner.sacct.calls
        self._reattach()
        self._submit({u: None for u in self.todo if u not in self.watch and u not in self.results})
        next_poll = time.monotonic() + self.cluster.poll_interval_s
        while self.watch or self.retry:
            time.sleep(min(FILE_CHECK_S, self.cluster.poll_interval_s))
            self._check_cancelled()
            self._collect()
            if self.watch and time.monotonic() >= next_poll:
                self._poll()
                next_poll = time.monotonic() + self.cluster.poll_interval_s
            self._submit(dict(self.retry))
            self._progress()
        queries = self.runner.sacct.calls - calls
        self.runner.log(f"{self.where} jobs done: {queries} sacct queries in {time.monotonic() - start:.1f}s")
        return self.results

    # ------------------------------------------------------------ submitting

    def _reattach(self) -> None:
        """Collect the recorded jobs' results; watch every other recorded job (the polls decide which are
        lost, by the same rule as for any job); a job that raised starts again (its cause may be fixed)."""
        recorded = {u: self.book[u]["job_id"] for u in self.todo if u in self.book}
        finished = executor.finished_job_ids(self.folder, list(recorded.values()))
        for unit, job_id in recorded.items():
            outcome = executor.job_outcome(self.folder, job_id) if job_id in finished else None
            if outcome is not None and outcome[0] == SUCCESS and self._output_exists(unit):
                self.results[unit] = outcome[1]
            elif outcome is not None and outcome[0] == ERROR and NOT_REQUEUED not in outcome[1]:
                del self.book[unit]
            else:
                self.watch[unit] = job_id
                self.fresh.add(unit)
        if self.watch:
            ids = ", ".join(self.watch.values())
            self.runner.log(f"{self.where} reattached to {len(self.watch)} recorded job(s): {ids}")

    def _submit(self, units: dict[str, str | None]) -> None:
        """Submit ``units`` (``{unit: why resubmitted}``) as few arrays as Slurm takes; record and save
        their job ids before anything else. Units a submit limit refuses wait in ``retry`` for jobs to end."""
        if not units:
            return
        if self.held_at is not None:
            room = self.held_at - len(self.watch)  # jobs of ours that left the queue since the refusal
            if room <= 0:
                return
            units = dict(list(units.items())[:room])
        self._check_cancelled()
        runner, queue, total = self.runner, list(units), len(units)
        if runner.max_array is None:
            runner.max_array = max_array_size() or 0
        size = min(total, runner.max_array or total)
        parallelism = self.cluster.resources(self.jobs.stage).array_parallelism
        while queue:
            chunk = queue[:size]
            share = share_of(parallelism, len(chunk), total) if size < total else None
            try:
                ids = executor.submit_slurm(
                    self.cluster, self.jobs.stage, self.folder, self.jobs.fn,
                    [self.todo[u] for u in chunk], parallelism=share,
                )  # fmt: skip
            except SubmissionRejected as e:
                limit, too_big = is_submit_limit(e.reason), is_array_size(e.reason)
                if (limit or too_big) and len(chunk) > 1:
                    size = len(chunk) // 2
                    continue
                if not limit or not self.watch:
                    raise
                self._hold(queue, units, e.reason)
                return
            self._record(chunk, ids, units)
            queue = queue[len(chunk) :]
        if self.held_at is not None:
            self.held_at = len(self.watch) if self.retry else None

    def _hold(self, queue: list[str], units: dict[str, str | None], reason: str) -> None:
        """Keep ``queue`` for later: Slurm takes no more jobs until some of ours end."""
        if self.held_at is None:
            self.runner.log(
                f"{self.where} Slurm refused more jobs ({reason}); {len(queue)} unit(s) wait until some of "
                f"the {len(self.watch)} queued job(s) end"
            )
        self.held_at = len(self.watch)
        for unit in queue:
            self.retry[unit] = units[unit]

    def _record(self, chunk: list[str], ids: list[str], reasons: dict[str, str | None]) -> None:
        previous = {u: self.book.get(u, {}) for u in chunk}
        for unit, job_id in zip(chunk, ids, strict=True):
            attempts = 0 if unit in self.fresh else previous[unit].get("attempts", 0)
            self.book[unit] = {"job_id": job_id, "attempts": attempts + 1}
            self.watch[unit] = job_id
            self.retry.pop(unit, None)
            self.fresh.discard(unit)
        save_state(self.runner.run_dir, self.runner.state)  # before waiting: a new launcher reattaches
        t, stage, first = self.jobs.t, self.jobs.stage, array_id(ids[0])
        self.events.emit(
            ev.SUBMITTED, iteration=t, stage=stage, job_id=first, num_tasks=len(ids), units=chunk
        )
        for unit in chunk:
            why = reasons.get(unit)
            if why is None:
                continue
            attempt = self.book[unit]["attempts"]
            self.events.emit(
                ev.RETRIED, iteration=t, stage=stage, job_id=self.book[unit]["job_id"], unit=unit,
                previous=previous[unit].get("job_id"), attempt=attempt, reason=why,
            )  # fmt: skip
            self.runner.log(f"{self.where} unit {unit}: {why}; resubmitted (attempt {attempt})")
        self.runner.log(f"{self.where} submitted job {first} ({len(ids)} task(s): {', '.join(chunk)})")

    # ------------------------------------------------------------ waiting

    def _collect(self) -> None:
        """Take the result of every watched job whose result file exists with its output; stop on a job that
        raised. A result without its output is left to the polls (``_evidence``)."""
        finished = executor.finished_job_ids(self.folder, list(self.watch.values()))
        for unit, job_id in list(self.watch.items()):
            if job_id not in finished:
                continue
            outcome = executor.job_outcome(self.folder, job_id)
            assert outcome is not None  # the file exists; a job writes it atomically
            self._take(unit, job_id, outcome)

    def _take(self, unit: str, job_id: str, outcome: tuple[str, Any]) -> bool:
        """Use a job's outcome if it is final (a result with its output, or an error of its code)."""
        status, value = outcome
        if status == SUCCESS and self._output_exists(unit):
            del self.watch[unit]
            self.results[unit] = value
            self.events.emit(ev.ENDED, iteration=self.jobs.t, stage=self.jobs.stage, job_id=job_id)
            return True
        if status == ERROR and NOT_REQUEUED not in value:
            del self.watch[unit]
            self._fail(unit, job_id, executor.last_line(value))
        return False

    def _poll(self) -> None:
        """One Slurm query for every watched job: start/requeue events; confirmed losses resubmitted."""
        statuses, source = self.runner.query(self.watch.values())
        if statuses is None:
            self.runner.log(
                f"{self.where} sacct and squeue failed; asking again in {self.cluster.poll_interval_s:g}s"
            )
        split_arrays = {array_id(j) for j in statuses or {} if "_" in j}
        finished = executor.finished_job_ids(self.folder, list(self.watch.values()))
        self.counts = Counter()
        for unit, job_id in list(self.watch.items()):
            seen = self.seen.setdefault(job_id, _Seen(runs=self.book[unit].get("runs", 1)))
            status = None
            if statuses is not None:
                status = statuses.get(job_id) or self._unlisted(job_id, seen, statuses, split_arrays, source)
                if job_id in statuses:
                    seen.unknown_since = None
                if status is not None:
                    self._note(unit, job_id, status, seen)
                if status is not None and status.live:
                    self.fresh.discard(unit)  # seen alive since the restart: its retries count on
            evidence = self._evidence(unit, job_id, status, job_id in finished)
            if evidence is None:
                seen.lost_polls = 0
                continue
            seen.lost_polls += 1
            if seen.lost_polls >= CONFIRM_POLLS and self._evidence(unit, job_id, status, True) is not None:
                del self.watch[unit]
                self._lost(unit, job_id, WHY.get(evidence, evidence.lower()))
        line = progress.job_counts_line(self.jobs.stage, self.counts)
        if line != self.last_counts:
            self.runner.log(f"[iter {self.jobs.t}] {line}")
            self.last_counts = line

    def _evidence(self, unit: str, job_id: str, status: JobStatus | None, listed: bool) -> str | None:
        """What says the unit is lost now (a key of ``WHY``), or None: a result, a live job, no answer.
        The result file is opened only when the folder lists it or Slurm says the job ended (``listed``: in
        this poll's one directory listing), not once per task and poll."""
        ended = status is not None and not status.live
        if not listed and not ended:
            return None
        outcome = executor.job_outcome(self.folder, job_id)
        if outcome is not None:
            if self._take(unit, job_id, outcome):
                return None
            return NOT_REQUEUED if outcome[0] == ERROR else "OUTPUT"
        if status is None or status.live:
            return None
        return status.state

    def _unlisted(
        self,
        job_id: str,
        seen: _Seen,
        statuses: dict[str, JobStatus],
        split_arrays: set[str],
        source: str,
    ) -> JobStatus | None:
        """The status of a job Slurm's answer has no line for: squeue lists every queued job, so one it does
        not list has ended (GONE). From sacct: None (wait) for a while, then MISSING.

        slurmdbd learns of submissions and starts seconds late, and Slurm 22.05 shows an array whose tasks
        have not started as one line under the bare array id (whose state, e.g. COMPLETED while the tasks
        run, says nothing about them). A task absent beside listed siblings was cancelled while pending, or
        has just started: it is lost after ``SIBLING_PATIENCE_S``; a job unknown altogether after
        ``UNKNOWN_PATIENCE_S`` (at least 5 polls each way).
        """
        if source == "squeue":
            return JobStatus(state=GONE, runs=seen.runs)
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
        attempts = 0 if unit in self.fresh else self.book[unit]["attempts"]
        if attempts > self.cluster.max_retries:
            error = f"{why}; gave up on unit {unit} after {attempts} attempt(s) (cluster.max_retries)"
            self._fail(unit, job_id, error)
        self.retry[unit] = f"job {job_id} {why}"

    def _fail(self, unit: str, job_id: str, error: str) -> None:
        log = str(executor.job_log(self.folder, job_id))
        self.events.emit(
            ev.FAILED, iteration=self.jobs.t, stage=self.jobs.stage, job_id=job_id, unit=unit, error=error,
            log=log,
        )  # fmt: skip
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
