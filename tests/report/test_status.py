"""``sparta-hpc status`` from a state file and an event log (no run needed)."""

from __future__ import annotations

import io
import json
import os
import socket
import subprocess
import sys
from datetime import timedelta
from pathlib import Path

import pytest

from sparta_hpc.processes import process_identity
from sparta_hpc.report.status import STOPPED_EXIT, run_status, status_text, watch
from sparta_hpc.store import events
from sparta_hpc.store.progress import STALE_S, Heartbeat
from sparta_hpc.store.rundir import RunDir
from sparta_hpc.store.state import RunState, load_state, save_state

RATINGS = {"a": {"rating": 101.0, "deviation": 0.4}, "b": {"rating": 99.5, "deviation": 0.3}}


def make_run(tmp_path: Path, holder_pid: int) -> RunDir:
    run = RunDir(tmp_path)
    state = RunState(config_hash="x", iterations_total=2, iteration=1, ratings=RATINGS)
    state.rating_history = [{"a": 100.5, "b": 99.0}, {"a": 101.0, "b": 99.5}]
    for stage in ("plan", "generate", "judge", "rate", "train", "evaluate"):
        state.mark_done(0, stage, {}, {"seconds": 1.5})
    state.mark_done(1, "plan", {}, {"seconds": 2.0, "matches": 8})
    save_state(run, state)
    run.lock_file.write_text(json.dumps({"host": socket.gethostname(), "pid": holder_pid}))
    log = events.EventLog(run)
    log.emit(events.STAGE_START, iteration=0, stage="plan")
    log.emit(events.STAGE_START, iteration=1, stage="generate")
    for kind in (events.SUBMITTED, events.PREEMPTED, events.REQUEUED, events.PREEMPTED, events.RETRIED):
        log.emit(kind, iteration=1, stage="generate", job_id="42_0")
    return run


def test_running_stage_shows_elapsed_time_preemptions_and_retries(tmp_path: Path) -> None:
    run = make_run(tmp_path, os.getpid())
    start = events.parse_time(events.read_events(run)[1]["time"])
    status = run_status(run.root, now=start + timedelta(seconds=90))
    rows = {(r["iteration"], r["stage"]): r for r in status["stages"]}
    generate = rows[(1, "generate")]
    assert generate["state"] == "running" and generate["seconds"] == 90.0
    assert (generate["preemptions"], generate["requeues"], generate["retries"]) == (2, 1, 1)
    assert rows[(1, "plan")]["state"] == "done" and rows[(1, "plan")]["info"] == {"matches": 8}
    assert rows[(1, "judge")]["state"] == "todo"
    assert (status["preemptions"], status["retries"], status["launcher"]) == (2, 1, "running")
    assert [r["player"] for r in status["leaderboard"]] == ["a", "b"]
    assert status["leaderboard"][0]["change"] == 0.5
    text = status_text(status)
    assert "running 1:30 p2 r1" in text
    assert "preemptions 2" in text and "retries 1" in text


def test_a_dead_launcher_leaves_the_stage_stopped(tmp_path: Path) -> None:
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True)
    run = make_run(tmp_path, int(dead.stdout))
    _assert_stopped(run)


def test_a_reused_pid_is_not_the_launcher(tmp_path: Path) -> None:
    """pids wrap around: the lock names the launcher's start time, and another process with its pid (here
    this one, recorded with another start time) does not count as the launcher."""
    run = make_run(tmp_path, os.getpid())
    holder = json.loads(run.lock_file.read_text())
    run.lock_file.write_text(json.dumps({**holder, "started": "1"}))
    _assert_stopped(run)


def _assert_stopped(run: RunDir) -> None:
    status = run_status(run.root)
    generate = next(r for r in status["stages"] if (r["iteration"], r["stage"]) == (1, "generate"))
    assert generate["state"] == "stopped"
    assert status["launcher"] == "stopped"
    assert "launcher stopped" in status_text(status)


def test_json_keeps_the_documented_keys(tmp_path: Path) -> None:
    run = make_run(tmp_path, os.getpid())
    out = subprocess.run(
        [sys.executable, "-m", "sparta_hpc.cli", "status", str(run.root), "--json"],
        capture_output=True,
        text=True,
        check=True,
    )
    doc = json.loads(out.stdout)
    assert {"run_dir", "done", "iteration", "iterations_total", "stages", "ratings"} <= set(doc)
    assert doc["ratings"] == RATINGS
    assert {"iteration", "stage", "state"} <= set(doc["stages"][0])


# ---------------------------------------------------------------- live: units, chunks, queue, launcher


def _unit_progress(
    run: RunDir, unit: str, chunks: list[int], items: list[int], when: str, done: bool, found: int = 0
) -> None:
    record = {"unit": unit, "attempt": f"42_{unit}", "chunks": chunks, "items": items, "finished": done}
    record["found"] = found
    path = run.unit_progress(1, "generate", unit)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps({**record, "updated": when, "started": when}))


def _live_run(tmp_path: Path, holder: dict[str, object]) -> RunDir:
    """Iteration 1's generate at work: 4 shards, shard 0 done before this launcher, 1 done since, 2 at
    chunk 1/3, 3 not started; jobs 42_1..42_3 recorded, the launcher itself is job 41 (``--detach``)."""
    run = make_run(tmp_path, os.getpid())
    run.lock_file.write_text(json.dumps(holder))
    state = load_state(run)
    assert state is not None
    state.launcher_job = "41"
    state.stage_jobs(1, "generate").update({u: {"job_id": f"42_{u}", "attempts": 1} for u in "123"})
    save_state(run, state)
    events.EventLog(run).emit(events.UNITS, iteration=1, stage="generate", total=4, todo=["1", "2", "3"])
    now = events.utc_now()
    _unit_progress(run, "1", [2, 2], [8, 8], now, done=True)
    _unit_progress(run, "2", [1, 3], [4, 10], now, done=False)
    return run


class Queue:
    """A stand-in for squeue that records its calls (the real one: tests/cluster/test_squeue_states.py)."""

    def __init__(self, states: dict[str, str]) -> None:
        self.states, self.calls = states, []  # type: ignore[var-annotated]

    def __call__(self, job_ids: list[str]) -> dict[str, dict[str, str]]:
        self.calls.append(job_ids)
        reason = {"PENDING": "Resources"}
        return {j: {"state": s, "reason": reason.get(s, "None")} for j, s in self.states.items()}


def test_a_running_stage_shows_units_chunks_and_job_states_from_one_query(tmp_path: Path) -> None:
    run = _live_run(tmp_path, {"host": socket.gethostname(), "pid": os.getpid()})
    queue = Queue({"41": "RUNNING", "42_2": "RUNNING", "42_3": "PENDING"})
    status = run_status(run.root, queue=queue)
    assert queue.calls == [["41", "42_1", "42_2", "42_3"]], (
        "one query for the stage's jobs and the launcher's"
    )
    generate = next(r for r in status["stages"] if (r["iteration"], r["stage"]) == (1, "generate"))
    assert generate["units"] == {"total": 4, "done": 2, "started": 1}
    assert (generate["chunks"], generate["items"]) == ({"done": 3, "total": 5}, {"done": 12, "total": 18})
    assert generate["jobs"] == {"NOT_QUEUED": 1, "PENDING": 1, "RUNNING": 1}
    assert [(u["unit"], u.get("state"), u.get("chunks")) for u in generate["active"]] == [
        ("2", "RUNNING", [1, 3]),
        ("3", "PENDING", None),
    ]
    assert status["launcher_job"] == {"job_id": "41", "state": "RUNNING", "reason": "None"}
    text = status_text(status)
    assert "iter 1 generate: units 2/4 done, 1 at work; chunks 3/5, items 12/18" in text
    assert "jobs: 1 not queued, 1 pending, 1 running" in text
    assert "unit 2     job 42_2  running  chunks 1/3, items 4/10  updated" in text
    assert "unit 3     job 42_3  pending (Resources)" in text
    assert status["queue"] == "ok" and "leaderboard" in text
    start = events.parse_time(events.read_events(run)[1]["time"])
    later = run_status(run.root, now=start + timedelta(seconds=120))
    generate = next(r for r in later["stages"] if (r["iteration"], r["stage"]) == (1, "generate"))
    # 12 items computed in 120 s; left: 6 of the started units + 9 (their mean) for the unit not started
    assert generate["eta_seconds"] == 150.0 and "; ETA ~2:30" in status_text(later)
    _unit_progress(
        run, "2", [1, 3], [4, 10], events.utc_now(), done=False, found=4
    )  # found saved, not computed
    resumed = run_status(run.root, now=start + timedelta(seconds=120))
    generate = next(r for r in resumed["stages"] if (r["iteration"], r["stage"]) == (1, "generate"))
    assert generate["eta_seconds"] == 15 * 120 / 8


def test_a_failed_queue_query_is_said_and_progress_still_shown(tmp_path: Path) -> None:
    run = _live_run(tmp_path, {"host": socket.gethostname(), "pid": os.getpid()})
    status = run_status(run.root, queue=lambda ids: None)
    generate = next(r for r in status["stages"] if (r["iteration"], r["stage"]) == (1, "generate"))
    assert status["queue"] == "failed" and "jobs" not in generate
    assert generate["units"]["done"] == 2
    assert "squeue failed" in status_text(status)


@pytest.mark.parametrize(
    ("queued", "launcher", "stage"),
    [
        ({"41": "RUNNING"}, "running", "running"),
        ({"41": "PENDING"}, "queued", "running"),
        ({}, "stopped", "stopped"),
    ],
)
def test_a_launcher_on_another_host_is_judged_by_its_slurm_job(
    tmp_path: Path, queued: dict[str, str], launcher: str, stage: str
) -> None:
    run = _live_run(tmp_path, {"host": "node-17", "pid": 1})
    status = run_status(run.root, queue=Queue(queued))
    generate = next(r for r in status["stages"] if (r["iteration"], r["stage"]) == (1, "generate"))
    assert (status["launcher"], generate["state"]) == (launcher, stage)


def test_without_a_job_the_heartbeat_tells_a_launcher_on_another_host(tmp_path: Path) -> None:
    run = make_run(tmp_path, 1)
    run.lock_file.write_text(json.dumps({"host": "login-2", "pid": 1}))
    assert run_status(run.root)["launcher"] == "unknown"
    run.heartbeat_file.write_text('{"time": "half-written by hand"}')
    assert run_status(run.root)["launcher"] == "unknown"
    Heartbeat(run).beat()
    beat = events.parse_time(json.loads(run.heartbeat_file.read_text())["time"])
    assert run_status(run.root, now=beat + timedelta(seconds=10))["launcher"] == "running"
    late = run_status(run.root, now=beat + timedelta(seconds=STALE_S + 1))
    assert late["launcher"] == "stopped"


def test_elapsed_time_stops_at_the_last_sign_of_life(tmp_path: Path) -> None:
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True)
    run = make_run(tmp_path, int(dead.stdout))
    log = events.read_events(run)
    first, generate_start = events.parse_time(log[0]["time"]), events.parse_time(log[1]["time"])
    last = events.parse_time(log[-1]["time"]) + timedelta(seconds=30)  # a job reported after the last event
    _unit_progress(run, "0", [1, 2], [4, 8], last.strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3] + "Z", done=False)
    later = [run_status(run.root, now=last + timedelta(hours=h)) for h in (1, 5)]
    assert later[0]["elapsed_seconds"] == later[1]["elapsed_seconds"] == (last - first).total_seconds()
    rows = [next(r for r in s["stages"] if r["stage"] == "generate" and r["iteration"] == 1) for s in later]
    assert rows[0]["state"] == rows[1]["state"] == "stopped"
    assert rows[0]["seconds"] == rows[1]["seconds"] == (last - generate_start).total_seconds()
    assert rows[0]["eta_seconds"] is None, "no estimate for a stopped run"


def test_watch_ends_when_the_launcher_dies(tmp_path: Path) -> None:
    launcher = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(1.5)"])
    try:
        run = make_run(tmp_path, launcher.pid)
        started = process_identity(launcher.pid)[1]
        run.lock_file.write_text(
            json.dumps({"host": socket.gethostname(), "pid": launcher.pid, "started": started})
        )
        out = io.StringIO()
        code = watch(run.root, 0.2, as_json=False, stream=out)
    finally:
        launcher.wait()
    prints = out.getvalue().count("iterations committed:")
    assert code == STOPPED_EXIT and prints >= 2, "it watched the live launcher, then ended when it was gone"
    assert out.getvalue().rstrip().endswith("run the same command again to resume it")


def test_watch_ends_when_the_run_is_done(tmp_path: Path) -> None:
    run = make_run(tmp_path, os.getpid())
    state = load_state(run)
    assert state is not None
    state.iteration = state.iterations_total
    save_state(run, state)
    out = io.StringIO()
    assert watch(run.root, 3600, as_json=True, stream=out) == 0
    assert json.loads(out.getvalue())["launcher"] == "finished"
