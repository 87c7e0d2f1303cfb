"""The Slurm wait loop (``run/scheduler.py``) as a state machine: a fake sbatch, a scripted sacct, result
files written as submitit writes them, and a virtual clock: each case runs in milliseconds, deterministically.

Times: submission at t=0, one sacct call every ``POLL_S`` (poll n at t=n), a result-file check every
``FILE_CHECK_S``. A ``Poll`` scripts one sacct call: the result files that appear just before it, and its
answer (None: sacct failed; then ``queue`` is squeue's answer, None: squeue failed too). Every case asserts
which units were submitted after how many sacct calls.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from submitit.core.utils import JobPaths, cloudpickle_dump, temporary_save_path

from sparta_hpc.cluster import executor
from sparta_hpc.cluster.sacct import JobStatus, Sacct
from sparta_hpc.config import load_config
from sparta_hpc.errors import StageFailed, SubmissionRejected
from sparta_hpc.run import slurm_stage
from sparta_hpc.run.scheduler import Runner, StageJobs
from sparta_hpc.store.events import read_events
from sparta_hpc.store.rundir import RunDir
from sparta_hpc.store.state import RunState, load_state

T, STAGE = 0, "generate"
POLL_S = 1.0
FILE_CHECK_S = 0.25
UNKNOWN_PATIENCE_S = 8.0
SIBLING_PATIENCE_S = 5.0  # both at least 5 polls: the loop's floor


class Clock:
    """Virtual ``time.monotonic``/``time.sleep`` of the scheduler; ``at`` runs an action at a given time."""

    def __init__(self) -> None:
        self.start = self.now = 1000.0
        self.actions: list[tuple[float, Callable[[], None]]] = []

    def monotonic(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.now += seconds
        assert self.now - self.start < 1000, "the wait loop never ended"
        for due, action in [a for a in self.actions if a[0] <= self.now - self.start]:
            self.actions.remove((due, action))
            action()

    def at(self, t: float, action: Callable[[], None]) -> None:
        self.actions.append((t, action))


def write_result(folder: Path, job_id: str, outcome: tuple[str, Any]) -> None:
    """The job's result file, written as submitit's ``process_job`` writes it (temporary file, rename)."""
    path = JobPaths(folder, job_id).result_pickle
    path.parent.mkdir(parents=True, exist_ok=True)
    with temporary_save_path(path) as tmp:
        cloudpickle_dump(outcome, tmp)


def ok(value: Any) -> tuple[str, Any]:
    return ("success", value)


@dataclass
class Poll:
    """One scripted sacct call: result files that appear just before it, then its answer."""

    states: dict[str, str] | None
    results: dict[str, tuple[str, Any]] = field(default_factory=dict)
    queue: dict[str, str] | None = None
    """squeue's answer when sacct fails (every job of the user); None: squeue fails too."""


class ScriptedSacct(Sacct):
    """Answers each call with the next ``Poll``; records the job ids it was asked about."""

    def __init__(self, folder: Path, polls: list[Poll]) -> None:
        super().__init__(command="/nonexistent/sacct")
        self.folder = folder
        self.polls = list(polls)
        self.asked: list[list[str]] = []
        self.queue: dict[str, str] | None = None
        """The last poll's squeue answer, given when sacct failed."""
        self.squeue_calls = 0

    def query(self, job_ids: Iterable[str]) -> dict[str, JobStatus] | None:
        self.calls += 1
        self.asked.append(sorted(job_ids))
        assert self.polls, f"sacct call {self.calls} is not scripted (asked about {self.asked[-1]})"
        poll = self.polls.pop(0)
        for job_id, outcome in poll.results.items():
            write_result(self.folder, job_id, outcome)
        self.queue = poll.queue
        if poll.states is None:
            return None
        return {j: JobStatus(state=s, runs=1) for j, s in poll.states.items()}

    def squeue(self, job_ids: Iterable[str]) -> dict[str, JobStatus] | None:
        """squeue's answer after a failed sacct call: the one scripted with that call."""
        self.squeue_calls += 1
        if self.queue is None:
            return None
        return {j: JobStatus(state=s, runs=1) for j, s in self.queue.items()}


class FakeSbatch:
    """Stands for ``executor.submit_slurm``: job ids 100, 101, ...; array tasks ``N_i`` for several units."""

    def __init__(self, sacct: ScriptedSacct) -> None:
        self.sacct = sacct
        self.next = 100
        self.submitted: list[tuple[int, list[str], list[str]]] = []
        """``(sacct calls before it, units, job ids)`` of every submission."""

        self.limit: int | None = None
        """A QOS submit limit: at most this many of the jobs submitted may be queued (watched) at once."""
        self.reject: str | None = None
        """Refuse every submission with this reason."""
        self.parallelism: list[int | None] = []

    def __call__(
        self,
        cluster: Any,
        stage: str,
        folder: Path,
        fn: Any,
        args_list: list[tuple[Any, ...]],
        parallelism: int | None = None,
    ) -> list[str]:
        assert stage == STAGE and cluster.backend == "slurm"
        if self.reject is not None:
            raise SubmissionRejected(stage, len(args_list), self.reject)
        if self.limit is not None and self.queued() + len(args_list) > self.limit:
            raise SubmissionRejected(stage, len(args_list), QOS_REFUSAL)
        n, self.next = self.next, self.next + 1
        ids = [str(n)] if len(args_list) == 1 else [f"{n}_{i}" for i in range(len(args_list))]
        self.submitted.append((self.sacct.calls, [args[0] for args in args_list], ids))
        self.parallelism.append(parallelism)
        return ids

    def queued(self) -> int:
        """Jobs submitted whose result file does not exist yet (what a QOS counts as queued)."""
        ids = [j for _, _, ids in self.submitted for j in ids]
        return len(ids) - len(executor.finished_job_ids(self.sacct.folder, ids))


QOS_REFUSAL = (
    "QOSMaxSubmitJobPerUserLimit; Batch job submission failed: Job violates accounting/QOS policy "
    "(job submit limit, user's size and/or time limits)"
)
"""sbatch's words (``sbatch_reason``) when a QOS MaxSubmitJobsPerUser refuses a submission (Slurm 22.05)."""


@dataclass
class World:
    run: RunDir
    state: RunState
    sacct: ScriptedSacct
    sbatch: FakeSbatch
    clock: Clock
    runner: Runner
    log: list[str]

    @property
    def folder(self) -> Path:
        return self.run.jobs(T, STAGE)

    def stage(self, units: list[str], outputs: set[str] | None = None) -> dict[str, Any]:
        """Run the stage's units (``fn(unit)``, never called here: the fake jobs never run); ``outputs``: the
        units whose output exists (a set the test changes as it goes; None: a result is the output)."""
        is_done = None if outputs is None else outputs.__contains__
        return self.runner.run(StageJobs(T, STAGE, _never, {u: (u,) for u in units}, is_done=is_done))

    def book(self) -> dict[str, dict[str, Any]]:
        """The recorded jobs of the stage as saved on disk."""
        saved = load_state(self.run)
        assert saved is not None
        return saved.stage_jobs(T, STAGE)

    def events(self, kind: str) -> list[dict[str, Any]]:
        return [e for e in read_events(self.run) if e["kind"] == kind]


def _never(unit: str) -> str:
    raise AssertionError("a job function ran in the launcher")


@pytest.fixture
def make(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Callable[..., World]:
    def make(
        polls: list[Poll],
        max_retries: int = 2,
        book: dict[str, dict[str, Any]] | None = None,
        max_array: int = 0,
    ) -> World:
        overrides = [
            "cluster.backend=slurm",
            f"cluster.poll_interval_s={POLL_S}",
            f"cluster.max_retries={max_retries}",
        ]
        cfg = load_config(None, overrides)
        run = RunDir(tmp_path / "run")
        state = RunState(config_hash="test", iterations_total=1)
        state.stage_jobs(T, STAGE).update(book or {})
        sacct = ScriptedSacct(run.jobs(T, STAGE), polls)
        sbatch, clock, log = FakeSbatch(sacct), Clock(), []
        monkeypatch.setattr(executor, "submit_slurm", sbatch)
        monkeypatch.setattr(slurm_stage, "time", clock)
        monkeypatch.setattr(slurm_stage, "FILE_CHECK_S", FILE_CHECK_S)
        monkeypatch.setattr(slurm_stage, "UNKNOWN_PATIENCE_S", UNKNOWN_PATIENCE_S)
        monkeypatch.setattr(slurm_stage, "SIBLING_PATIENCE_S", SIBLING_PATIENCE_S)
        runner = Runner(cfg, run, state, log.append, sacct=sacct, squeue=sacct.squeue)
        runner.max_array = max_array
        return World(run, state, sacct, sbatch, clock, runner, log)

    return make


def test_confirmation_polls_are_two() -> None:
    assert slurm_stage.CONFIRM_POLLS == 2  # the scripts below count on it


@pytest.mark.parametrize("end", ["CANCELLED", "NODE_FAIL"])
def test_job_ended_without_result_is_resubmitted_and_new_result_used(
    make: Callable[..., World], end: str
) -> None:
    w = make(
        [
            Poll({"100_0": "RUNNING", "100_1": end}),
            Poll({"100_0": "COMPLETED", "100_1": end}, results={"100_0": ok("A")}),  # 100_1 lost: resubmit
            Poll({"101": "COMPLETED"}, results={"101": ok("B")}),
        ]
    )
    assert w.stage(["a", "b"]) == {"a": "A", "b": "B"}
    assert w.sbatch.submitted == [(0, ["a", "b"], ["100_0", "100_1"]), (2, ["b"], ["101"])]
    assert w.sacct.asked == [["100_0", "100_1"], ["100_0", "100_1"], ["101"]]
    [retried] = w.events("retried")
    assert (retried["unit"], retried["previous"], retried["job_id"], retried["attempt"]) == (
        "b",
        "100_1",
        "101",
        2,
    )
    assert w.book() == {"a": {"job_id": "100_0", "attempts": 1}, "b": {"job_id": "101", "attempts": 2}}


@pytest.mark.parametrize("max_retries", [0, 2])
def test_gives_up_after_max_retries(make: Callable[..., World], max_retries: int) -> None:
    jobs = [str(100 + k) for k in range(max_retries + 1)]
    w = make([Poll({j: "NODE_FAIL"}) for j in jobs for _ in range(2)], max_retries=max_retries)
    with pytest.raises(StageFailed) as failed:
        w.stage(["a"])
    assert w.sbatch.submitted == [(2 * k, ["a"], [j]) for k, j in enumerate(jobs)]
    assert failed.value.job_id == jobs[-1] and failed.value.stage == STAGE
    message = str(failed.value)
    assert (
        f"job {jobs[-1]} failed: its node failed; gave up on unit a after {max_retries + 1} attempt(s)"
        in message
    )
    assert "(cluster.max_retries)" in message
    [event] = w.events("failed")
    assert (event["unit"], event["job_id"]) == ("a", jobs[-1])


OUTAGE = 12
"""Failed sacct calls in a row: longer than the unknown patience, so a failure must not count as 'unknown'."""


def test_sacct_failing_resubmits_nothing_until_it_answers(make: Callable[..., World]) -> None:
    w = make(
        [Poll(None)] * OUTAGE  # the job is gone, but sacct cannot say so
        + [Poll({"100": "CANCELLED"}), Poll({"100": "CANCELLED"})]
        + [Poll({"101": "COMPLETED"}, results={"101": ok("A")})]
    )
    assert w.stage(["a"]) == {"a": "A"}
    assert w.sbatch.submitted == [(0, ["a"], ["100"]), (OUTAGE + 2, ["a"], ["101"])]
    assert sum("sacct and squeue failed" in line for line in w.log) == OUTAGE
    assert w.sacct.squeue_calls == OUTAGE


def test_sacct_failing_then_job_completes(make: Callable[..., World]) -> None:
    w = make(
        [Poll(None)] * OUTAGE
        + [Poll({"100": "RUNNING"}), Poll({"100": "COMPLETED"}, results={"100": ok("A")})]
    )
    assert w.stage(["a"]) == {"a": "A"}
    assert w.sbatch.submitted == [(0, ["a"], ["100"])]
    assert w.sacct.calls == OUTAGE + 2


def test_job_unknown_to_sacct_is_lost_when_its_patience_ends(make: Callable[..., World]) -> None:
    # unknown from poll 1 (t=1); patience 8 s: pending up to poll 9, MISSING at 9 and 10 (confirmed): resubmit
    w = make([Poll({})] * 10 + [Poll({"101": "COMPLETED"}, results={"101": ok("A")})])
    assert w.stage(["a"]) == {"a": "A"}
    assert w.sbatch.submitted == [(0, ["a"], ["100"]), (10, ["a"], ["101"])]
    [retried] = w.events("retried")
    assert retried["reason"] == "job 100 is unknown to Slurm's accounting"


def test_job_that_appears_before_its_patience_ends_is_not_resubmitted(make: Callable[..., World]) -> None:
    w = make(
        [Poll({})] * 8 + [Poll({"100": "RUNNING"}), Poll({"100": "COMPLETED"}, results={"100": ok("A")})]
    )
    assert w.stage(["a"]) == {"a": "A"}
    assert w.sbatch.submitted == [(0, ["a"], ["100"])]


def test_array_task_missing_beside_its_siblings_has_the_shorter_patience(make: Callable[..., World]) -> None:
    # 100_1 absent while 100_0 is listed (cancelled while pending): patience 5 s, MISSING at polls 6 and 7
    w = make(
        [Poll({"100_0": "RUNNING"})] * 6
        + [Poll({"100_0": "COMPLETED"}, results={"100_0": ok("A")})]
        + [Poll({"101": "COMPLETED"}, results={"101": ok("B")})]
    )
    assert w.stage(["a", "b"]) == {"a": "A", "b": "B"}
    assert w.sbatch.submitted == [(0, ["a", "b"], ["100_0", "100_1"]), (7, ["b"], ["101"])]


def test_late_result_file_after_completed_is_not_resubmitted(make: Callable[..., World]) -> None:
    # NFS lag: sacct says COMPLETED at poll 1 without a result file; the file appears by poll 2
    w = make([Poll({"100": "COMPLETED"}), Poll({"100": "COMPLETED"}, results={"100": ok("A")})])
    assert w.stage(["a"]) == {"a": "A"}
    assert w.sbatch.submitted == [(0, ["a"], ["100"])]
    assert w.events("retried") == []


def test_result_file_is_noticed_between_polls(make: Callable[..., World]) -> None:
    w = make([Poll({"100": "RUNNING"})])
    w.clock.at(1.5, lambda: write_result(w.folder, "100", ok("A")))
    assert w.stage(["a"]) == {"a": "A"}
    assert w.sacct.calls == 1 and w.clock.now - w.clock.start == 1.5


def test_job_that_raised_stops_the_stage_at_once(make: Callable[..., World]) -> None:
    error = 'Traceback (most recent call last):\n  File "x.py", line 1\nValueError: shard 0 is corrupt\n\n'
    w = make([Poll({"100_0": "RUNNING", "100_1": "RUNNING"})])
    w.clock.at(1.5, lambda: write_result(w.folder, "100_0", ("error", error)))
    with pytest.raises(StageFailed) as failed:
        w.stage(["a", "b"])
    assert failed.value.error == "ValueError: shard 0 is corrupt"
    assert failed.value.job_id == "100_0" and failed.value.log == str(JobPaths(w.folder, "100_0").stderr)
    assert w.sbatch.submitted == [(0, ["a", "b"], ["100_0", "100_1"])]
    assert w.sacct.calls == 1 and w.clock.now - w.clock.start == 1.5  # 100_1 still runs: not waited for
    [event] = w.events("failed")
    assert (event["unit"], event["error"]) == ("a", "ValueError: shard 0 is corrupt")


def test_job_that_submitit_stopped_requeueing_is_resubmitted(make: Callable[..., World]) -> None:
    error = "Traceback ...\nsubmitit.core.utils.UncompletedJobError: Job 100 exceeded 3 timeouts\n"
    # the result file at t=1.5 is evidence at polls 2 and 3 (confirmed like every loss): resubmitted then
    w = make(
        [Poll({"100": "RUNNING"})]
        + [Poll({"100": "COMPLETED"})] * 2
        + [Poll({"101": "COMPLETED"}, results={"101": ok("A")})]
    )
    w.clock.at(1.5, lambda: write_result(w.folder, "100", ("error", error)))
    assert w.stage(["a"]) == {"a": "A"}
    assert w.sbatch.submitted == [(0, ["a"], ["100"]), (3, ["a"], ["101"])]
    [retried] = w.events("retried")
    assert retried["reason"] == "job 100 hit its time limit too often"


def test_reattach_waits_for_recorded_jobs_and_submits_only_the_rest(make: Callable[..., World]) -> None:
    book = {
        "a": {"job_id": "90_0", "attempts": 1},  # running
        "b": {"job_id": "90_1", "attempts": 2},  # pending (a retry already)
        "c": {"job_id": "90_2", "attempts": 3},  # cancelled while no launcher watched: fresh start
        "d": {"job_id": "90_3", "attempts": 1},  # finished while no launcher watched
    }
    w = make(
        [
            Poll({"90_0": "RUNNING", "90_1": "PENDING", "90_2": "CANCELLED", "100": "RUNNING"}),
            Poll(  # 90_2 ended at two polls: lost, the same rule as any job; resubmitted with fresh retries
                {"90_0": "COMPLETED", "90_1": "COMPLETED", "90_2": "CANCELLED", "100": "COMPLETED"},
                results={"90_0": ok("A"), "90_1": ok("B"), "100": ok("E")},
            ),
            Poll({"101": "COMPLETED"}, results={"101": ok("C")}),
        ],
        book=book,
    )
    write_result(w.folder, "90_3", ok("D"))
    assert w.stage(["a", "b", "c", "d", "e"]) == {"a": "A", "b": "B", "c": "C", "d": "D", "e": "E"}
    assert w.sbatch.submitted == [(0, ["e"], ["100"]), (2, ["c"], ["101"])]
    assert w.sacct.asked[0] == ["100", "90_0", "90_1", "90_2"]  # no query before the first poll
    assert w.book() == {
        "a": {"job_id": "90_0", "attempts": 1},
        "b": {"job_id": "90_1", "attempts": 2},
        "c": {"job_id": "101", "attempts": 1},
        "d": {"job_id": "90_3", "attempts": 1},
        "e": {"job_id": "100", "attempts": 1},
    }
    assert "reattached to 3 recorded job(s): 90_0, 90_1, 90_2" in "\n".join(w.log)


def test_reattach_with_sacct_down_waits_for_every_recorded_job(make: Callable[..., World]) -> None:
    book = {"a": {"job_id": "90", "attempts": 1}}
    w = make([Poll(None), Poll({"90": "COMPLETED"}, results={"90": ok("A")})], book=book)
    assert w.stage(["a"]) == {"a": "A"}
    assert w.sbatch.submitted == []


# ---------------------------------------------------------------- without accounting (squeue)


def test_sacct_down_a_job_gone_from_squeue_without_result_is_resubmitted(make: Callable[..., World]) -> None:
    # slurmdbd down from poll 1: squeue answers; 100_1 is killed and leaves the queue without a result
    w = make(
        [
            Poll(None, queue={"100_0": "RUNNING", "100_1": "RUNNING"}),
            Poll(None, queue={"100_0": "RUNNING"}),  # 100_1 gone: evidence 1
            Poll(None, queue={"100_0": "RUNNING"}, results={"100_0": ok("A")}),  # evidence 2: lost
            Poll(None, queue={"101": "RUNNING"}),
            Poll(None, queue={}, results={"101": ok("B")}),
        ]
    )
    assert w.stage(["a", "b"]) == {"a": "A", "b": "B"}
    assert w.sbatch.submitted == [(0, ["a", "b"], ["100_0", "100_1"]), (3, ["b"], ["101"])]
    [retried] = w.events("retried")
    assert retried["reason"] == "job 100_1 left Slurm's queue without writing a result"
    assert w.sacct.squeue_calls == 5 and w.sacct.calls == 5
    assert any("followed with squeue" in line for line in w.log)


def test_sacct_down_a_job_gone_from_squeue_with_its_result_is_not_resubmitted(
    make: Callable[..., World],
) -> None:
    # the job ends between two polls; its result file lags one poll behind squeue (NFS)
    w = make(
        [
            Poll(None, queue={"100": "RUNNING"}),
            Poll(None, queue={}),
            Poll(None, queue={}, results={"100": ok("A")}),
        ]
    )
    assert w.stage(["a"]) == {"a": "A"}
    assert w.sbatch.submitted == [(0, ["a"], ["100"])]
    assert w.events("retried") == []


def test_squeue_then_sacct_again(make: Callable[..., World]) -> None:
    w = make(
        [
            Poll(None, queue={"100": "RUNNING"}),
            Poll({"100": "RUNNING"}),
            Poll({"100": "COMPLETED"}, results={"100": ok("A")}),
        ]
    )
    assert w.stage(["a"]) == {"a": "A"}
    assert any("sacct answers again" in line for line in w.log)


# ---------------------------------------------------------------- one confirmation rule


def test_result_whose_output_appears_late_is_not_resubmitted(make: Callable[..., World]) -> None:
    # the result file is there at t=0.5, its output only after poll 1 (stale NFS cache): one poll of evidence
    outputs: set[str] = set()
    w = make([Poll({"100": "COMPLETED"}), Poll({"100": "COMPLETED"})])
    w.clock.at(0.5, lambda: write_result(w.folder, "100", ok("A")))
    w.clock.at(1.5, lambda: outputs.add("a"))
    assert w.stage(["a"], outputs) == {"a": "A"}
    assert w.sbatch.submitted == [(0, ["a"], ["100"])]
    assert w.events("retried") == []


def test_result_without_output_at_two_polls_is_resubmitted(make: Callable[..., World]) -> None:
    outputs: set[str] = set()
    w = make([Poll({"100": "COMPLETED"}), Poll({"100": "COMPLETED"}), Poll({"101": "COMPLETED"})])
    w.clock.at(0.5, lambda: write_result(w.folder, "100", ok("A")))

    def finish() -> None:
        write_result(w.folder, "101", ok("B"))
        outputs.add("a")

    w.clock.at(2.5, finish)
    assert w.stage(["a"], outputs) == {"a": "B"}
    assert w.sbatch.submitted == [(0, ["a"], ["100"]), (2, ["a"], ["101"])]
    [retried] = w.events("retried")
    assert retried["reason"] == "job 100 finished but its output is missing"


def test_evidence_that_goes_away_resets_the_count(make: Callable[..., World]) -> None:
    # ended at poll 1, live again at poll 2 (requeued), ended at 3 and 4: lost only then
    w = make(
        [Poll({"100": "NODE_FAIL"}), Poll({"100": "PENDING"})]
        + [Poll({"100": "NODE_FAIL"})] * 2
        + [Poll({"101": "COMPLETED"}, results={"101": ok("A")})]
    )
    assert w.stage(["a"]) == {"a": "A"}
    assert w.sbatch.submitted == [(0, ["a"], ["100"]), (4, ["a"], ["101"])]


# ---------------------------------------------------------------- array limits


def test_units_above_max_array_size_are_split_and_share_the_parallelism(make: Callable[..., World]) -> None:
    ids = [f"{n}_{i}" for n, k in ((100, 2), (101, 2)) for i in range(k)] + ["102"]
    w = make([Poll({j: "COMPLETED" for j in ids}, results={j: ok(j) for j in ids})], max_array=2)
    assert w.stage(list("abcde")) == dict(zip("abcde", ids, strict=True))
    assert [(units, jobs) for _, units, jobs in w.sbatch.submitted] == [
        (["a", "b"], ["100_0", "100_1"]),
        (["c", "d"], ["101_0", "101_1"]),
        (["e"], ["102"]),
    ]
    parallelism = w.runner.cfg.cluster.resources(STAGE).array_parallelism
    assert w.sbatch.parallelism == [parallelism * 2 // 5, parallelism * 2 // 5, max(1, parallelism // 5)]


def test_submit_limit_splits_and_holds_units_until_jobs_end(make: Callable[..., World]) -> None:
    # at most 2 jobs queued: 5 refused, 2 taken; the 3 others wait for 2 to end, then 2, then 1
    w = make(
        [
            Poll({"100_0": "RUNNING", "100_1": "RUNNING"}, results={"100_0": ok(0), "100_1": ok(1)}),
            Poll({"101_0": "RUNNING", "101_1": "RUNNING"}, results={"101_0": ok(2)}),
            Poll({"101_1": "RUNNING", "102": "PENDING"}, results={"101_1": ok(3), "102": ok(4)}),
        ]
    )
    w.sbatch.limit = 2
    assert w.stage(list("abcde")) == {u: i for i, u in enumerate("abcde")}
    assert [(calls, units) for calls, units, _ in w.sbatch.submitted] == [
        (0, ["a", "b"]),
        (1, ["c", "d"]),
        (2, ["e"]),
    ]
    assert w.events("retried") == []
    [held] = [line for line in w.log if "Slurm refused more jobs" in line]
    assert "QOSMaxSubmitJobPerUserLimit" in held and "3 unit(s) wait" in held


def test_submit_limit_with_no_job_of_ours_queued_stops_with_slurms_reason(make: Callable[..., World]) -> None:
    w = make([])
    w.sbatch.limit = 0
    with pytest.raises(SubmissionRejected) as refused:
        w.stage(["a", "b"])
    assert "QOSMaxSubmitJobPerUserLimit" in str(refused.value) and "1 job(s)" in str(refused.value)
    assert w.sbatch.submitted == [] and w.events("submitted") == []


def test_other_refusal_stops_at_once_with_slurms_reason(make: Callable[..., World]) -> None:
    w = make([])
    w.sbatch.reject = "Batch job submission failed: Invalid partition name specified"
    with pytest.raises(SubmissionRejected) as refused:
        w.stage(["a", "b", "c"])
    assert str(refused.value) == (
        "generate: Slurm refused to queue 3 job(s): "
        "Batch job submission failed: Invalid partition name specified"
    )


def test_a_reattached_job_seen_alive_then_lost_keeps_counting_its_attempts(
    make: Callable[..., World],
) -> None:
    book = {"a": {"job_id": "90", "attempts": 3}}  # max_retries 2: this was the last attempt
    w = make([Poll({"90": "RUNNING"})] + [Poll({"90": "NODE_FAIL"})] * 2, book=book)
    with pytest.raises(StageFailed, match="gave up on unit a after 3 attempt"):
        w.stage(["a"])
    assert w.sbatch.submitted == []
