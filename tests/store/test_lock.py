"""The launcher lock without flock (``store/lock.py``), with real processes on the real file system: the
one lock there is, so every launcher test runs it too. Holders "on another host" are processes whose
``socket.gethostname`` answers another name: their pid cannot be checked, only their heartbeat."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

from sparta_hpc.errors import LockHeld, LockLost
from sparta_hpc.store.lock import LOCK_LOST_EXIT, LauncherLock
from sparta_hpc.store.rundir import RunDir
from sparta_hpc.store.state import RunState, save_state

ROOT = Path(__file__).resolve().parents[2]
HOLDER = """
import socket, sys, time
from sparta_hpc.store.lock import LauncherLock
from sparta_hpc.store.rundir import RunDir
run, host, heartbeat_s, stale_s, hold_s = sys.argv[1], sys.argv[2], *map(float, sys.argv[3:6])
if host:
    socket.gethostname = lambda: host
lock = LauncherLock(RunDir(run), heartbeat_s=heartbeat_s, stale_s=stale_s)
try:
    lock.acquire()
except Exception as e:
    print("refused", type(e).__name__, e, flush=True)
    sys.exit(1)
print("acquired", lock.token, flush=True)
end = time.monotonic() + hold_s
while time.monotonic() < end:
    lock.check()  # what save_state does before every write
    time.sleep(0.02)
lock.release()
print("released", flush=True)
"""


def holder(
    run: Path, host: str = "", heartbeat_s: float = 0.2, stale_s: float = 2.0, hold_s: float = 60.0
) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-c", HOLDER, str(run), host, str(heartbeat_s), str(stale_s), str(hold_s)],
        cwd=ROOT,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )


def first_line(proc: subprocess.Popen[str]) -> str:
    """The holder's outcome: its first line that is not a message of the lock (``watching its heartbeat``)."""
    assert proc.stdout is not None
    for line in proc.stdout:
        if not line.startswith("sparta-hpc:"):
            return line.strip()
    return ""


def record(run: RunDir) -> dict:
    return json.loads(run.lock_file.read_text())


def dead_pid() -> int:
    proc = subprocess.run(
        [sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True
    )
    return int(proc.stdout)


def test_held_lock_names_its_holder_and_is_gone_after_release(tmp_path: Path) -> None:
    run = RunDir(tmp_path)
    with LauncherLock(run, heartbeat_s=0.05) as lock:
        time.sleep(0.3)  # a few heartbeats
        held = record(run)
        assert (held["host"], held["pid"], held["token"]) == (socket.gethostname(), os.getpid(), lock.token)
        assert held["beat"] >= 2
        with pytest.raises(LockHeld, match=f'"pid": {os.getpid()}'):
            LauncherLock(run).acquire()
    assert not run.lock_file.exists()
    assert [p.name for p in tmp_path.iterdir()] == []  # no temporary or claim file left


def test_a_killed_holder_on_this_host_is_taken_over_at_once(tmp_path: Path) -> None:
    run = RunDir(tmp_path)
    proc = holder(tmp_path)
    assert first_line(proc).startswith("acquired")
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    with LauncherLock(run, stale_s=3600) as lock:  # no waiting: its pid is gone
        assert record(run)["token"] == lock.token


@pytest.mark.parametrize("stale_on", ["this host", "another host"])
def test_launchers_racing_for_a_stale_lock_exactly_one_wins(tmp_path: Path, stale_on: str) -> None:
    run = RunDir(tmp_path)
    host = socket.gethostname() if stale_on == "this host" else "node-gone"
    run.lock_file.write_text(json.dumps({"host": host, "pid": dead_pid(), "token": "dead", "beat": 7}))
    racers = [holder(tmp_path, stale_s=1.0, hold_s=4.0) for _ in range(6)]
    outcomes = [first_line(p) for p in racers]
    for proc in racers:
        proc.wait(timeout=60)
    winners = [o for o in outcomes if o.startswith("acquired")]
    assert len(winners) == 1, outcomes
    assert all(o.startswith("refused LockHeld") for o in outcomes if o not in winners), outcomes
    assert [p.returncode for p in racers].count(0) == 1
    assert [p.name for p in tmp_path.iterdir()] == []  # released; claims and temporaries removed


def test_a_live_holder_on_another_host_is_refused(tmp_path: Path) -> None:
    proc = holder(tmp_path, host="node-b", stale_s=3600)
    try:
        assert first_line(proc).startswith("acquired")
        with pytest.raises(LockHeld, match='"host": "node-b"'):
            LauncherLock(RunDir(tmp_path), stale_s=5.0).acquire()  # sees its heartbeat move, takes nothing
    finally:
        proc.kill()
        proc.wait()


def test_a_stalled_holder_is_taken_over_and_stops_without_writing(tmp_path: Path) -> None:
    """A holder frozen longer than ``stale_s`` (SIGSTOP: a suspended process, a frozen node) is taken over
    by a launcher elsewhere; when it runs again it finds itself stalled or replaced and stops at once."""
    run = RunDir(tmp_path)
    proc = holder(tmp_path, host="node-b", stale_s=2.0)
    assert first_line(proc).startswith("acquired")
    proc.send_signal(signal.SIGSTOP)
    try:
        lock = LauncherLock(run, heartbeat_s=0.2, stale_s=2.0)
        lock.acquire()
    finally:
        proc.send_signal(signal.SIGCONT)
    try:
        out, _ = proc.communicate(timeout=30)
        assert proc.returncode in (1, LOCK_LOST_EXIT), out
        assert "stalled" in out or "taken over" in out, out
        time.sleep(0.5)  # a few of our heartbeats: the stopped holder wrote nothing over them
        assert record(run)["token"] == lock.token
        save_state(run, RunState(config_hash="x", iterations_total=1))  # we still hold it
    finally:
        lock.release()


def test_a_launcher_that_stalled_itself_refuses_to_write_the_state(tmp_path: Path) -> None:
    run = RunDir(tmp_path)
    with LauncherLock(run, heartbeat_s=3600, stale_s=0.2) as lock:  # no heartbeat comes within 0.1 s
        time.sleep(0.15)
        with pytest.raises(LockLost, match="stalled"):
            save_state(run, RunState(config_hash="x", iterations_total=1))
        assert not run.state_file.exists()
        assert lock.lost is not None


def test_a_claimant_that_died_half_way_does_not_block_the_lock(tmp_path: Path) -> None:
    run = RunDir(tmp_path)
    me = socket.gethostname()
    run.lock_file.write_text(json.dumps({"host": me, "pid": dead_pid(), "token": "dead", "beat": 0}))
    claim = tmp_path / ".launcher.lock.takeover.dead.0.1"
    claim.write_text(json.dumps({"host": me, "pid": dead_pid(), "token": "claimant"}))
    with LauncherLock(run) as lock:
        assert record(run)["token"] == lock.token
        assert not claim.exists()
