"""``sparta-hpc status`` from a state file and an event log (no run needed)."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
from datetime import timedelta
from pathlib import Path

from sparta_hpc.report.status import run_status, status_text
from sparta_hpc.store import events
from sparta_hpc.store.rundir import RunDir
from sparta_hpc.store.state import RunState, save_state

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
