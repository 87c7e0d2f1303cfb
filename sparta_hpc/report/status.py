"""What a run has done so far, read from its state file and event log only (works from any login shell)."""

from __future__ import annotations

import json
import socket
import sys
import time
from collections import Counter
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, TextIO

from sparta_hpc.errors import StateError
from sparta_hpc.processes import process_alive
from sparta_hpc.store import events as ev
from sparta_hpc.store.events import format_duration
from sparta_hpc.store.rundir import STAGES, RunDir
from sparta_hpc.store.state import leaderboard_text, load_state

COUNTED = {"preemptions": ev.PREEMPTED, "requeues": ev.REQUEUED, "retries": ev.RETRIED, "failures": ev.FAILED}
"""Status keys counted from the event log, per stage and for the whole run."""


def launcher_alive(run: RunDir) -> bool | None:
    """Whether the launcher named in the lock file still runs: None when it runs on another host (unknown)."""
    try:
        holder = json.loads(run.lock_file.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return False
    if holder.get("host") != socket.gethostname():
        return None
    try:
        identity = (int(holder["pid"]), holder.get("started"))
    except (KeyError, TypeError, ValueError):
        return None
    return process_alive(identity)


def _stage_row(
    t: int,
    stage: str,
    entry: dict[str, Any] | None,
    counts: Counter[str],
    started: str | None,
    live: bool,
    now: datetime,
) -> dict[str, Any]:
    row: dict[str, Any] = {"iteration": t, "stage": stage, "state": "todo"}
    if entry is not None:
        row["state"] = "done"
        row["seconds"] = entry["info"].get("seconds")
        row["info"] = {k: v for k, v in entry["info"].items() if k != "seconds"}
    elif started is not None:
        row["state"] = "running" if live else "stopped"
        row["seconds"] = round((now - ev.parse_time(started)).total_seconds(), 3)
    row.update({key: counts[kind] for key, kind in COUNTED.items()})
    return row


def run_status(root: Path, now: datetime | None = None) -> dict[str, Any]:
    """The status document of ``sparta-hpc status --json`` (documented in docs/formats.md)."""
    run = RunDir(root)
    state = load_state(run)
    if state is None:
        raise StateError(f"{run.state_file} does not exist: {root} is not a run directory (or never started)")
    now = now or datetime.now(UTC)
    events = ev.read_events(run)
    counts = ev.stage_counts(events)
    starts = ev.last_stage_start(events)
    alive = None if state.done else launcher_alive(run)
    live = alive is not False
    stages = [
        _stage_row(
            t, s, state.stage_entry(t, s), counts.get((t, s), Counter()), starts.get((t, s)), live, now
        )
        for t in range(state.iterations_total)
        for s in STAGES
    ]
    end = ev.parse_time(events[-1]["time"]) if state.done and events else now
    return {
        "run_dir": str(run.root),
        "done": state.done,
        "iteration": state.iteration,
        "iterations_total": state.iterations_total,
        "launcher": "finished" if state.done else {True: "running", False: "stopped", None: "unknown"}[alive],
        "elapsed_seconds": round((end - ev.parse_time(events[0]["time"])).total_seconds(), 3)
        if events
        else None,
        "stages": stages,
        **{key: sum(row[key] for row in stages) for key in COUNTED},
        "ratings": {
            p: {"rating": r["rating"], "deviation": r["deviation"]} for p, r in sorted(state.ratings.items())
        },
        "leaderboard": state.leaderboard(),
        "adapters": state.adapters,
        "mode": _mode(run),
    }


def _mode(run: RunDir) -> str:
    """``run.mode`` of the run, as its first rate report names it (``sparta`` when none does)."""
    path = run.rate_report(0)
    mode = json.loads(path.read_text()).get("mode") if path.exists() else None
    return str(mode or "sparta")


def _cell(row: dict[str, Any]) -> str:
    text = row["state"] if row.get("seconds") is None else f"{row['state']} {format_duration(row['seconds'])}"
    marks = "".join(f" {key[0]}{row[key]}" for key in ("preemptions", "retries", "failures") if row[key])
    return text + marks


def status_text(status: dict[str, Any]) -> str:
    """A table of iterations x stages (state, elapsed time, preemptions p, retries r, failures f), then the
    current leaderboard (best first)."""
    elapsed = status.get("elapsed_seconds")
    lines = [
        f"run: {status['run_dir']}",
        f"iterations committed: {status['iteration']}/{status['iterations_total']}"
        + ("  (done)" if status["done"] else f"  (launcher {status['launcher']})"),
        f"elapsed {format_duration(elapsed) if elapsed is not None else '-'}   "
        + "   ".join(f"{key} {status[key]}" for key in COUNTED),
        "",
        ("iter  " + "  ".join(f"{s:<14}" for s in STAGES)).rstrip(),
    ]
    for t in range(status["iterations_total"]):
        row = [r for r in status["stages"] if r["iteration"] == t]
        lines.append(f"{t:>4}  " + "  ".join(f"{_cell(r):<14}" for r in row).rstrip())
    if status.get("mode") == "self_rewarding":
        lines += ["", "run.mode=self_rewarding: no reputation; ratings stay at their initial values"]
    lines += ["", "leaderboard (SPARTA reputation; change: since the previous iteration):"]
    lines.append(leaderboard_text(status["leaderboard"], change=True))
    return "\n".join(lines)


def render(root: Path, as_json: bool) -> str:
    status = run_status(root)
    return json.dumps(status, indent=1, sort_keys=True) if as_json else status_text(status)


def watch(root: Path, seconds: float, as_json: bool, stream: TextIO = sys.stdout) -> int:
    """Print the status every ``seconds`` until the run is done or Ctrl-C; the screen is cleared on a TTY
    (JSON: one compact document per line)."""
    clear = stream.isatty() and not as_json
    try:
        while True:
            status = run_status(root)
            text = json.dumps(status, sort_keys=True) if as_json else status_text(status)
            stream.write(("\033[H\033[2J" if clear else "") + text + "\n")
            stream.flush()
            if status["done"]:
                return 0
            time.sleep(seconds)
    except KeyboardInterrupt:
        return 0
