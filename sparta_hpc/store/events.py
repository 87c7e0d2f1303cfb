"""The run-level event log: one JSON object per line in ``events.jsonl`` (documented in docs/formats.md).

Any process may append (the launcher, a Slurm job, the executor's wait loop): each event is one ``write`` on a
file opened with ``O_APPEND``, so lines from concurrent writers never interleave on a local or Lustre/GPFS
file system. (NFS does not make ``O_APPEND`` atomic across clients; there, only the launcher host should
write.) The log is for people and ``sparta-hpc status``; nothing that decides a result ever reads it.
"""

from __future__ import annotations

import json
import os
from collections import Counter
from datetime import UTC, datetime
from typing import Any

from sparta_hpc.files import jsonl_lines
from sparta_hpc.store.rundir import RunDir

STAGE_START = "stage_start"
"""The launcher began a stage (fields: iteration, stage)."""
STAGE_END = "stage_end"
"""The launcher recorded a stage as done (fields: iteration, stage, seconds)."""
UNITS = "units"
"""The launcher is about to run a stage's units (fields: iteration, stage, total, todo: units not done)."""
SUBMITTED = "submitted"
"""Jobs were submitted (fields: iteration, stage, job_id, num_tasks)."""
STARTED = "started"
"""A job began running (fields: iteration, stage, job_id)."""
ENDED = "ended"
"""A job finished successfully (fields: iteration, stage, job_id)."""
PREEMPTED = "preempted"
"""A job was preempted or timed out (fields: iteration, stage, job_id)."""
REQUEUED = "requeued"
"""A preempted job went back to the queue (fields: iteration, stage, job_id)."""
RETRIED = "retried"
"""A failed job was submitted again (fields: iteration, stage, job_id, attempt)."""
FAILED = "failed"
"""A job failed for good (fields: iteration, stage, job_id, error, log)."""
RESERVED = ("time", "kind")


def utc_now() -> str:
    """The current UTC time as ISO 8601 with milliseconds, e.g. ``2025-06-01T12:00:00.123Z``."""
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3] + "Z"


def parse_time(text: str) -> datetime:
    """The inverse of ``utc_now`` (an aware datetime)."""
    return datetime.strptime(text, "%Y-%m-%dT%H:%M:%S.%fZ").replace(tzinfo=UTC)


def format_duration(seconds: float) -> str:
    """``4.25`` -> ``4.2s``, ``75`` -> ``1:15``, ``3725`` -> ``1:02:05``."""
    if seconds < 59.95:
        return f"{max(0.0, seconds):.1f}s"
    s = int(round(seconds))
    h, rest = divmod(s, 3600)
    m, s = divmod(rest, 60)
    return f"{h}:{m:02d}:{s:02d}" if h else f"{m}:{s:02d}"


class EventLog:
    """Appends events to ``run.events_file``; safe to use from many processes at once."""

    def __init__(self, run: RunDir) -> None:
        self.path = run.events_file

    def emit(self, kind: str, **fields: Any) -> dict[str, Any]:
        """Append ``{"time": <UTC>, "kind": kind, **fields}`` as one line; returns the event."""
        clash = [k for k in RESERVED if k in fields]
        if clash:
            raise ValueError(f"event fields {clash} are reserved; rename them")
        event = {"time": utc_now(), "kind": kind, **fields}
        line = json.dumps(event, ensure_ascii=False, sort_keys=True, default=str) + "\n"
        self.path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
        try:
            os.write(fd, line.encode("utf-8"))
        finally:
            os.close(fd)
        return event


def read_events(run: RunDir) -> list[dict[str, Any]]:
    """Every event in file order; [] without a log. A line that is not a JSON object with a ``kind`` and a
    ``time`` as ``utc_now`` writes it (e.g. a writer killed mid-line on a file system without atomic appends)
    is skipped: the log informs, it never decides."""
    if not run.events_file.exists():
        return []
    events = []
    with open(run.events_file, encoding="utf-8", errors="replace") as f:
        for _, event in jsonl_lines(run.events_file, lines=f, keep_bad=True):
            if not isinstance(event, dict) or "kind" not in event:
                continue  # a BadLine, or JSON that is no event
            try:
                parse_time(event["time"])
            except (TypeError, KeyError, ValueError):
                continue
            events.append(event)
    return events


def stage_counts(events: list[dict[str, Any]]) -> dict[tuple[int, str], Counter[str]]:
    """``{(iteration, stage): Counter(kind)}`` of the events that name an iteration and a stage."""
    out: dict[tuple[int, str], Counter[str]] = {}
    for e in events:
        if isinstance(e.get("iteration"), int) and isinstance(e.get("stage"), str):
            out.setdefault((e["iteration"], e["stage"]), Counter())[e["kind"]] += 1
    return out


def last_units(events: list[dict[str, Any]]) -> dict[tuple[int, str], dict[str, Any]]:
    """``{(iteration, stage): event}`` of the latest ``units`` event of every stage."""
    return {
        (e["iteration"], e["stage"]): e
        for e in events
        if e["kind"] == UNITS and isinstance(e.get("iteration"), int) and isinstance(e.get("todo"), list)
    }


def last_stage_start(events: list[dict[str, Any]]) -> dict[tuple[int, str], str]:
    """``{(iteration, stage): time}`` of the latest ``stage_start`` of every stage."""
    return {
        (e["iteration"], e["stage"]): e["time"]
        for e in events
        if e["kind"] == STAGE_START and isinstance(e.get("iteration"), int) and "stage" in e
    }
