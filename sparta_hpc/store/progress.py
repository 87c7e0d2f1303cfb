"""Live progress written into the run directory: one small file per running unit (by its job) and the
launcher's heartbeat. ``sparta-hpc status`` reads them from any login shell (docs/formats.md "Unit progress").

Every write is atomic (``files.atomic_write_text``), so a reader sees a whole record or the previous one,
and a failed write (a full disk) is ignored: progress informs, it never decides, and no record or checksum
depends on it. A unit's file lives under ``progress/``, never among the records; the launcher removes the
files of the stages it redoes (``run/resume.py``).
"""

from __future__ import annotations

import json
import os
import socket
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from sparta_hpc.files import atomic_write_text, dump_json
from sparta_hpc.store.events import utc_now
from sparta_hpc.store.rundir import RunDir

MIN_WRITE_S = 2.0
"""A unit's file is rewritten at most this often while it runs (its start and its end are always written)."""
HEARTBEAT_S = 30.0
"""How often a waiting launcher rewrites ``launcher_heartbeat.json``."""
STALE_S = 300.0
"""A launcher on another host whose heartbeat is older than this counts as stopped."""


def _write(path: Path, record: dict[str, Any]) -> bool:
    """Write ``record`` atomically; False (and nothing raised) when the file system refuses."""
    try:
        atomic_write_text(path, dump_json(record))
    except OSError:
        return False
    return True


@dataclass
class UnitProgress:
    """What one unit (a shard, an evaluation task, a player) has done, written by the job that runs it.

    ``chunks_total`` and ``items_total`` are known when the job starts (items: requests, or examples);
    ``advance`` counts a chunk, found saved or computed; ``finish`` marks the unit's output published.
    """

    path: Path
    unit: str
    attempt: str
    chunks_total: int
    items_total: int
    clock: Any = time.monotonic
    chunks_done: int = 0
    items_done: int = 0
    items_found: int = 0
    started: str = field(default_factory=utc_now)
    _last: float | None = None

    @classmethod
    def open(
        cls, run: RunDir, t: int, stage: str, unit: str, attempt: str, chunks_total: int, items_total: int
    ) -> UnitProgress:
        """Start a unit's progress and write it (0 done) at once."""
        progress = cls(run.unit_progress(t, stage, unit), unit, attempt, chunks_total, items_total)
        progress.write()
        return progress

    def record(self, finished: bool = False) -> dict[str, Any]:
        return {
            "unit": self.unit,
            "attempt": self.attempt,
            "host": socket.gethostname(),
            "pid": os.getpid(),
            "started": self.started,
            "updated": utc_now(),
            "chunks": [self.chunks_done, self.chunks_total],
            "items": [self.items_done, self.items_total],
            "found": self.items_found,
            "finished": finished,
        }

    def write(self, finished: bool = False) -> None:
        self._last = self.clock()
        _write(self.path, self.record(finished))

    def advance(self, items: int, chunks: int = 1, found: bool = False) -> None:
        """Count ``chunks`` chunks of ``items`` items done (``found``: saved by an earlier run of the unit,
        not computed now); rewrite the file if ``MIN_WRITE_S`` has passed."""
        self.chunks_done += chunks
        self.items_done += items
        self.items_found += items if found else 0
        if self._last is None or self.clock() - self._last >= MIN_WRITE_S:
            self.write()

    def finish(self) -> None:
        """The unit's output exists (published by this attempt or another): everything is done."""
        self.chunks_done, self.items_done = self.chunks_total, self.items_total
        self.write(finished=True)


def read_unit_progress(run: RunDir, t: int, stage: str) -> dict[str, dict[str, Any]]:
    """``{unit: record}`` of every unit of a stage that wrote its progress; an unreadable file is skipped."""
    folder = run.progress_dir(t, stage)
    out: dict[str, dict[str, Any]] = {}
    try:
        names = sorted(os.listdir(folder))
    except OSError:
        return out
    for name in names:
        if name.startswith(".") or not name.endswith(".json"):
            continue  # a temporary of a writer at work (or killed)
        record = _read(folder / name)
        if record is not None and _valid(record):
            out[name[: -len(".json")]] = record
    return out


def _read(path: Path) -> dict[str, Any] | None:
    try:
        record = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return record if isinstance(record, dict) else None


def _valid(record: dict[str, Any]) -> bool:
    pairs = [record.get("chunks"), record.get("items")]
    return all(
        isinstance(p, list) and len(p) == 2 and all(isinstance(n, int) for n in p) for p in pairs
    ) and isinstance(record.get("updated"), str)


# ---------------------------------------------------------------- the launcher's heartbeat


@dataclass
class Heartbeat:
    """Rewrites ``launcher_heartbeat.json`` (``{time, host, pid}``) at most every ``HEARTBEAT_S``."""

    run: RunDir
    clock: Any = time.monotonic
    _last: float | None = None

    def beat(self, force: bool = False) -> None:
        now = self.clock()
        if force or self._last is None or now - self._last >= HEARTBEAT_S:
            self._last = now
            record = {"time": utc_now(), "host": socket.gethostname(), "pid": os.getpid()}
            _write(self.run.heartbeat_file, record)


def read_heartbeat(run: RunDir) -> dict[str, Any] | None:
    """The launcher's last heartbeat, if it wrote one."""
    record = _read(run.heartbeat_file)
    return record if record is not None and isinstance(record.get("time"), str) else None
