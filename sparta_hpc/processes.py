"""Which process is which: a pid with its start time, so that a pid the kernel reused for another process is
never taken for the one that died (pids wrap around at ``/proc/sys/kernel/pid_max``, often 32768). A leaf."""

from __future__ import annotations

import os
from pathlib import Path

ProcessIdentity = tuple[int, str | None]
"""``(pid, start time)``: the start time (from /proc) tells a reused pid from the process it names."""


def process_identity(pid: int) -> ProcessIdentity:
    """The identity of a live process (start time ``None`` where /proc is unavailable)."""
    return pid, _proc_stat(pid)[1]


def _proc_stat(pid: int) -> tuple[str | None, str | None]:
    """``(state, start time)`` of a process from /proc/PID/stat; ``(None, None)`` when unreadable."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except (OSError, IndexError):
        return None, None
    return fields[0], fields[19]  # fields 3 (state) and 22 (starttime) of proc(5)


def process_alive(identity: ProcessIdentity) -> bool:
    """Whether the process still runs: not gone, not a zombie, and its pid not reused by another."""
    pid, start = identity
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        pass
    state, now = _proc_stat(pid)
    return state != "Z" and (start is None or now == start)
