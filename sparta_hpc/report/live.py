"""What a run is doing now: whether its launcher lives, when it last showed a sign of life, and each started
stage's units, chunks and live job states. Read from the run directory (the jobs' progress files, the
launcher's lock and heartbeat, the event log, the state); the live Slurm states come from a ``QueueQuery`` the
caller passes in (the CLI passes one ``squeue`` call: ``report/`` does not import ``cluster/``).
"""

from __future__ import annotations

import json
import socket
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from sparta_hpc.processes import process_alive
from sparta_hpc.store import events as ev
from sparta_hpc.store.progress import STALE_S, read_heartbeat, read_unit_progress
from sparta_hpc.store.rundir import RunDir
from sparta_hpc.store.state import RunState

QueueQuery = Callable[[list[str]], dict[str, dict[str, str]] | None]
"""``job ids -> {job id: {"state", "reason"}}`` of the jobs in the queue (the tasks of an array id too);
None when the query failed. One call per status."""
LIVE_LAUNCHER = ("running", "queued", "unknown")
"""Launcher states in which a started stage counts as running (else it is stopped)."""


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


def launcher_job(run: RunDir, state: RunState) -> str | None:
    """The Slurm job id of the run's detached launcher (``--detach``), if it has one."""
    if state.launcher_job:
        return state.launcher_job
    try:
        job_id = json.loads(run.launcher_job_file.read_text(encoding="utf-8")).get("job_id")
    except (OSError, ValueError, AttributeError):
        return None
    return str(job_id) if job_id else None


@dataclass
class Live:
    """The live part of a status: the launcher, the queue, and the time the run last showed a sign of life."""

    launcher: str
    """``finished``, ``running``, ``queued`` (its Slurm job waits to start), ``stopped`` or ``unknown``."""
    end: datetime
    """``now`` while the launcher may be alive; else its last sign of life (elapsed times stop there)."""
    queue: dict[str, dict[str, str]] | None
    """The queue states of the run's recorded jobs (None: not asked, or the query failed)."""
    queue_error: bool = False
    launcher_job: dict[str, Any] | None = None
    progress: dict[tuple[int, str], dict[str, dict[str, Any]]] = field(default_factory=dict)
    now: datetime | None = None


def started_stages(state: RunState, events: list[dict[str, Any]]) -> list[tuple[int, str]]:
    """``(iteration, stage)`` of every stage that started and is not recorded as done."""
    starts = ev.last_stage_start(events)
    return [key for key in starts if not state.is_done(*key) and key[0] < state.iterations_total]


def live_view(
    run: RunDir, state: RunState, events: list[dict[str, Any]], now: datetime, queue: QueueQuery | None
) -> Live:
    """Ask the queue once (the jobs of the started stages and the launcher's job), then decide the rest."""
    started = started_stages(state, events)
    progress = {key: read_unit_progress(run, *key) for key in started}
    job = launcher_job(run, state) if not state.done else None
    ids = [r["job_id"] for key in started for r in state.stage_jobs(*key).values() if r.get("job_id")]
    ids += [job] if job else []
    states = queue(sorted(set(ids))) if queue is not None and ids else None
    failed = queue is not None and bool(ids) and states is None
    job_doc = None
    if job is not None and states is not None:
        job_doc = {"job_id": job, **states.get(job, {"state": "NOT_QUEUED", "reason": ""})}
    heartbeat = read_heartbeat(run)
    launcher = _launcher(run, state, job_doc, heartbeat, now)
    signs: list[datetime | None] = [ev.parse_time(e["time"]) for e in events[-1:]]
    signs += [_time(heartbeat["time"])] if heartbeat else []
    signs += [_time(r["updated"]) for units in progress.values() for r in units.values()]
    last = max((s for s in signs if s is not None), default=now)
    end = now if launcher in LIVE_LAUNCHER else min(now, last)
    return Live(launcher, end, states, failed, job_doc, progress, now)


def _time(text: str) -> datetime | None:
    try:
        return ev.parse_time(text)
    except ValueError:
        return None


def _launcher(
    run: RunDir,
    state: RunState,
    job: dict[str, Any] | None,
    heartbeat: dict[str, Any] | None,
    now: datetime,
) -> str:
    if state.done:
        return "finished"
    alive = launcher_alive(run)
    if alive is not None:
        return "running" if alive else "stopped"
    if job is not None:  # a detached launcher: its Slurm job says
        if job["state"] == "NOT_QUEUED":
            return "stopped"
        return "running" if job["state"] in ("RUNNING", "COMPLETING") else "queued"
    beat = _time(heartbeat["time"]) if heartbeat else None
    if beat is not None and (now - beat).total_seconds() > STALE_S:
        return "stopped"  # on another host and silent for too long
    return "running" if beat is not None else "unknown"


def stage_live(
    live: Live, state: RunState, events: list[dict[str, Any]], t: int, stage: str, seconds: float
) -> dict[str, Any]:
    """``units``, ``chunks``, ``items``, ``eta_seconds`` and ``jobs`` of a stage that started ``seconds``
    ago, and one row per unit at work."""
    records = live.progress.get((t, stage), {})
    announced = ev.last_units(events).get((t, stage))
    todo = [str(u) for u in announced["todo"]] if announced else sorted(records)
    total = int(announced["total"]) if announced else len(records)
    book = state.stage_jobs(t, stage)
    mine = {u: records[u] for u in todo if u in records}
    finished = [u for u, r in mine.items() if r.get("finished")]
    units = {
        "total": total,
        "done": total - len(todo) + len(finished),
        "started": len(mine) - len(finished),
    }
    doc: dict[str, Any] = {
        "units": units,
        "chunks": _sum(mine.values(), "chunks"),
        "items": _sum(mine.values(), "items"),
        "eta_seconds": _eta(list(mine.values()), len(todo) - len(mine), seconds)
        if live.launcher in LIVE_LAUNCHER
        else None,
    }
    rows = []
    jobs: Counter[str] = Counter()
    for unit in todo:
        record, job_id = records.get(unit), book.get(unit, {}).get("job_id")
        queued = (live.queue or {}).get(job_id) if job_id else None
        if job_id and live.queue is not None:
            jobs[queued["state"] if queued else "NOT_QUEUED"] += 1
        if record is not None and record.get("finished"):
            continue
        if record is None and queued is None:
            continue
        row: dict[str, Any] = {"unit": unit, "job_id": job_id}
        if queued is not None:
            row |= {"state": queued["state"], "reason": queued["reason"]}
        if record is not None:
            row |= {k: record.get(k) for k in ("attempt", "chunks", "items", "updated")}
            updated = _time(str(record["updated"]))
            if updated is not None and live.now is not None:
                row["age_seconds"] = round(max(0.0, (live.now - updated).total_seconds()), 3)
        rows.append(row)
    if live.queue is not None and book:
        doc["jobs"] = dict(sorted(jobs.items()))
    doc["active"] = rows
    return doc


def _eta(reported: list[dict[str, Any]], not_started: int, seconds: float) -> float | None:
    """Seconds left at the rate items were computed since the stage started (queue waits and model loads
    included): the items the reported units have left, plus their mean size for each unit not started yet.
    None before any item was computed (or when the launcher is not alive: the caller passes no rate)."""
    computed = sum(r["items"][0] - int(r.get("found", 0)) for r in reported)
    total = sum(r["items"][1] for r in reported)
    if computed <= 0 or seconds <= 0 or total <= 0:
        return None
    left = total - sum(r["items"][0] for r in reported) + not_started * total / len(reported)
    return round(max(0.0, left) * seconds / computed, 1)


def _sum(records: Any, key: str) -> dict[str, int]:
    pairs = [r[key] for r in records]
    return {"done": sum(p[0] for p in pairs), "total": sum(p[1] for p in pairs)}
