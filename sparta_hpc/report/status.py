"""What a run has done so far, read from its state file and event log only (works from any login shell)."""

from __future__ import annotations

import json
import sys
import time
from collections import Counter
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, TextIO

from sparta_hpc.errors import StateError
from sparta_hpc.report.live import LIVE_LAUNCHER, Live, QueueQuery, live_view, stage_live
from sparta_hpc.store import events as ev
from sparta_hpc.store.events import format_duration
from sparta_hpc.store.rundir import STAGES, RunDir
from sparta_hpc.store.state import leaderboard_text, load_state

COUNTED = {"preemptions": ev.PREEMPTED, "requeues": ev.REQUEUED, "retries": ev.RETRIED, "failures": ev.FAILED}
"""Status keys counted from the event log, per stage and for the whole run."""


def _stage_row(
    t: int,
    stage: str,
    entry: dict[str, Any] | None,
    counts: Counter[str],
    started: str | None,
    live: Live,
) -> dict[str, Any]:
    row: dict[str, Any] = {"iteration": t, "stage": stage, "state": "todo"}
    if entry is not None:
        row["state"] = "done"
        row["seconds"] = entry["info"].get("seconds")
        row["info"] = {k: v for k, v in entry["info"].items() if k != "seconds"}
    elif started is not None:
        row["state"] = "running" if live.launcher in LIVE_LAUNCHER else "stopped"
        row["seconds"] = round(max(0.0, (live.end - ev.parse_time(started)).total_seconds()), 3)
    row.update({key: counts[kind] for key, kind in COUNTED.items()})
    return row


def run_status(root: Path, now: datetime | None = None, queue: QueueQuery | None = None) -> dict[str, Any]:
    """The status document of ``sparta-hpc status --json`` (documented in docs/formats.md). ``queue``: how
    to ask the job system for the live states of the run's jobs (one call), or None not to ask."""
    run = RunDir(root)
    state = load_state(run)
    if state is None:
        raise StateError(f"{run.state_file} does not exist: {root} is not a run directory (or never started)")
    now = now or datetime.now(UTC)
    events = ev.read_events(run)
    counts = ev.stage_counts(events)
    starts = ev.last_stage_start(events)
    live = live_view(run, state, events, now, queue)
    stages = [
        _stage_row(t, s, state.stage_entry(t, s), counts.get((t, s), Counter()), starts.get((t, s)), live)
        for t in range(state.iterations_total)
        for s in STAGES
    ]
    for row in stages:
        if row["state"] in ("running", "stopped"):
            row.update(stage_live(live, state, events, row["iteration"], row["stage"], row["seconds"]))
    end = ev.parse_time(events[-1]["time"]) if state.done and events else live.end
    return {
        "run_dir": str(run.root),
        "done": state.done,
        "iteration": state.iteration,
        "iterations_total": state.iterations_total,
        "launcher": live.launcher,
        "launcher_job": live.launcher_job,
        "queue": None if queue is None else ("failed" if live.queue_error else "ok"),
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
    lines += _live_lines(status)
    if status.get("mode") == "self_rewarding":
        lines += ["", "run.mode=self_rewarding: no reputation; ratings stay at their initial values"]
    lines += ["", "leaderboard (SPARTA reputation; change: since the previous iteration):"]
    lines.append(leaderboard_text(status["leaderboard"], change=True))
    return "\n".join(lines)


MAX_UNIT_LINES = 10
"""Units at work listed one per line under a started stage (the rest are counted)."""


def _live_lines(status: dict[str, Any]) -> list[str]:
    """Per started stage: units done/total, chunks and items of the units that reported, the queue states of
    its jobs, then one line per unit at work."""
    lines: list[str] = []
    job = status.get("launcher_job")
    if job is not None:
        reason = f" ({job['reason']})" if job["reason"] not in ("", "None") else ""
        lines += ["", f"launcher job {job['job_id']}: {job['state'].lower()}{reason}"]
    if status.get("queue") == "failed":
        lines += ["", "squeue failed: no live job states"]
    for row in status["stages"]:
        if "units" not in row:
            continue
        units, chunks, items = row["units"], row["chunks"], row["items"]
        head = f"iter {row['iteration']} {row['stage']}: units {units['done']}/{units['total']} done"
        head += f", {units['started']} at work" if units["started"] else ""
        if chunks["total"]:
            head += f"; chunks {chunks['done']}/{chunks['total']}, items {items['done']}/{items['total']}"
            head += " (units that started)"
        if row.get("eta_seconds") is not None:
            head += f"; ETA ~{format_duration(row['eta_seconds'])}"
        lines += ["", head]
        if "jobs" in row:
            lines.append(
                "  jobs: " + ", ".join(f"{n} {s.lower().replace('_', ' ')}" for s, n in row["jobs"].items())
            )
        for unit in row["active"][:MAX_UNIT_LINES]:
            lines.append("  " + _unit_line(unit))
        if len(row["active"]) > MAX_UNIT_LINES:
            lines.append(f"  ... and {len(row['active']) - MAX_UNIT_LINES} more")
    queued = any(r.get("jobs", {}).keys() - {"NOT_QUEUED"} for r in status["stages"])
    if status["launcher"] == "stopped" and queued:
        lines += ["", "the launcher stopped but jobs of the run are queued: run the same command to reattach"]
    return lines


def _unit_line(unit: dict[str, Any]) -> str:
    parts = [f"unit {unit['unit']:<4}"]
    if unit.get("job_id"):
        parts.append(f"job {unit['job_id']}")
    if "state" in unit:
        reason = f" ({unit['reason']})" if unit["reason"] not in ("", "None") else ""
        parts.append(unit["state"].lower() + reason)
    if "chunks" in unit:
        (chunks, of), (items, all_items) = unit["chunks"], unit["items"]
        parts.append(f"chunks {chunks}/{of}, items {items}/{all_items}" if of else "started")
    if unit.get("age_seconds") is not None:
        parts.append(f"updated {format_duration(unit['age_seconds'])} ago")
    return "  ".join(parts)


def render(root: Path, as_json: bool, queue: QueueQuery | None = None) -> str:
    status = run_status(root, queue=queue)
    return json.dumps(status, indent=1, sort_keys=True) if as_json else status_text(status)


STOPPED_EXIT = 1
"""Exit status of ``status --watch`` when it ends because no launcher drives the unfinished run."""


def watch(
    root: Path,
    seconds: float,
    as_json: bool,
    stream: TextIO = sys.stdout,
    queue: QueueQuery | None = None,
) -> int:
    """Print the status every ``seconds`` until the run is done (exit 0), no launcher drives it any more
    (``STOPPED_EXIT``), or Ctrl-C (0); the screen is cleared on a TTY (JSON: one compact document a line)."""
    clear = stream.isatty() and not as_json
    try:
        while True:
            status = run_status(root, queue=queue)
            text = json.dumps(status, sort_keys=True) if as_json else status_text(status)
            stream.write(("\033[H\033[2J" if clear else "") + text + "\n")
            stream.flush()
            if status["done"]:
                return 0
            if status["launcher"] == "stopped":
                if not as_json:
                    stream.write("no launcher drives this run: run the same command again to resume it\n")
                return STOPPED_EXIT
            time.sleep(seconds)
    except KeyboardInterrupt:
        return 0
