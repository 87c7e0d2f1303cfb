"""The launcher lock: one launcher per run directory, on any shared file system, flock or not.

``flock`` does not exclude across nodes everywhere (Lustre mounted ``localflock`` or ``noflock``, NFS
``nolock`` or ``local_lock=``), so the lock is a file, ``launcher.lock``, that needs only what every shared
file system gives: an exclusive create (a hard link that fails if the name exists) and an atomic rename.

- **Take it**: write the record (host, pid, start time, a random token, a heartbeat count) to a temporary
  file and hard-link it to ``launcher.lock``: of launchers starting together, exactly one link succeeds.
- **Hold it**: a thread rewrites the record (temporary file + rename) every ``heartbeat_s`` with the count
  incremented, after checking that the file still holds its token.
- **A stale lock**: a holder on this host is dead when its pid (with its start time) is gone; a holder on
  another host when its heartbeat count has not changed for ``stale_s`` seconds of the newcomer's clock (no
  clocks are compared across hosts). To take over, a newcomer creates a claim file named after the stale
  record (token and count) exclusively, checks that the lock still holds that record, then renames its own
  record over it: two newcomers that both judge the lock stale cannot both claim it. A claimant that died
  half-way is judged as a holder is (pid here, ``stale_s`` elsewhere), then the next claim number is used.
- **A holder that stalled** (suspended, or its node frozen) may have been taken over while it stood still: a
  holder whose last heartbeat is older than ``stale_s / 2`` stops before writing anything (``check``, called
  by ``save_state``; the heartbeat thread ends the process), and so does one that finds another token in
  the file.
"""

from __future__ import annotations

import contextlib
import errno
import json
import os
import socket
import sys
import threading
import time
import uuid
from pathlib import Path
from typing import Any

from sparta_hpc.errors import LockHeld, LockLost
from sparta_hpc.files import unwritable
from sparta_hpc.processes import process_alive, process_identity

HEARTBEAT_S = 5.0
"""Seconds between two heartbeats of the holder."""
STALE_S = 60.0
"""Seconds a holder on another host may leave its heartbeat unchanged before it counts as dead."""
LOCK_LOST_EXIT = 3
"""Exit status of a launcher whose heartbeat thread found its lock taken over (or itself stalled too long)."""
_HELD: dict[Path, LauncherLock] = {}
"""The locks this process holds, by lock file (``check_lock``)."""


class LauncherLock:
    """An exclusive lock on the run directory, held for the launcher's lifetime (see the module doc)."""

    def __init__(self, run: Any, heartbeat_s: float = HEARTBEAT_S, stale_s: float = STALE_S) -> None:
        self.path: Path = run.lock_file
        self.heartbeat_s = heartbeat_s
        self.stale_s = stale_s
        self.host = socket.gethostname()
        self.token = uuid.uuid4().hex
        self.beat = 0
        self.last_beat = 0.0
        self.lost: str | None = None
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    # ------------------------------------------------------------ taking it

    def acquire(self) -> None:
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            while not self._create():
                record = self._read()
                verdict = "gone" if record is None else self._judge(record)
                if verdict == "gone":
                    continue  # released in between: try again
                if verdict == "held":
                    holder = _show(record or {})
                    raise LockHeld(
                        f"run directory {self.path.parent} is driven by another launcher ({holder}); "
                        "wait for it to end or stop it first"
                    )
                if self._take_over(record or {}):
                    break
        except OSError as e:
            raise _unwritable(self.path, e) from None
        self.last_beat = time.monotonic()
        _HELD[self.path] = self
        self._thread = threading.Thread(target=self._heartbeat, name="launcher-lock", daemon=True)
        self._thread.start()

    def _record(self) -> dict[str, Any]:
        pid = os.getpid()
        return {
            "host": self.host,
            "pid": pid,
            "started": process_identity(pid)[1],
            "since": time.strftime("%Y-%m-%dT%H:%M:%S"),
            "token": self.token,
            "beat": self.beat,
        }

    def _temporary(self) -> Path:
        tmp = self.path.with_name(f".{self.path.name}.{self.token}.tmp")
        try:
            tmp.write_text(json.dumps(self._record()) + "\n", encoding="utf-8")
        except OSError:
            tmp.unlink(missing_ok=True)  # a full disk leaves no partial file behind
            raise
        return tmp

    def _create(self) -> bool:
        """Create the lock file holding this launcher's record; False if it exists."""
        tmp = self._temporary()
        try:
            os.link(tmp, self.path)
        except FileExistsError:
            return False
        except OSError as e:
            if e.errno not in (errno.EPERM, errno.EOPNOTSUPP, errno.ENOTSUP, errno.EMLINK):
                raise
            return self._create_without_link()
        finally:
            tmp.unlink(missing_ok=True)
        return True

    def _create_without_link(self) -> bool:
        """``_create`` on a file system without hard links: an exclusive create, then the record (a reader
        meanwhile sees an empty file, judged as a holder whose heartbeat does not change)."""
        try:
            fd = os.open(self.path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
        except FileExistsError:
            return False
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            f.write(json.dumps(self._record()) + "\n")
        return True

    def _read(self, path: Path | None = None) -> dict[str, Any] | None:
        """The record in the lock (or a claim) file; None if there is no such file; {} if unreadable."""
        try:
            text = (path or self.path).read_text(encoding="utf-8")
        except FileNotFoundError:
            return None
        try:
            record = json.loads(text)
        except ValueError:
            return {}
        return record if isinstance(record, dict) else {}

    def _judge(self, record: dict[str, Any], path: Path | None = None) -> str:
        """``held``, ``stale`` (its holder is dead) or ``gone`` (the file went away) for the holder named by
        ``record`` in ``path`` (the lock file by default; or a claim file)."""
        if record.get("host") == self.host and isinstance(record.get("pid"), int):
            return "held" if process_alive((record["pid"], record.get("started"))) else "stale"
        seen, since = _beat_of(record), time.monotonic()
        print(
            f"sparta-hpc: {path or self.path} names a launcher on {record.get('host', 'another host')}; "
            f"watching its heartbeat for up to {self.stale_s:g} s",
            file=sys.stderr,
            flush=True,
        )
        while time.monotonic() - since < self.stale_s:
            time.sleep(min(self.heartbeat_s / 2, self.stale_s / 10))
            now = self._read(path)
            if now is None:
                return "gone"
            if _beat_of(now) != seen:
                return "held"
        return "stale"

    def _take_over(self, stale: dict[str, Any]) -> bool:
        """Replace the stale record by ours, unless another launcher claims it first."""
        base = f".{self.path.name}.takeover.{stale.get('token', 'none')}.{stale.get('beat', 0)}"
        for number in range(1, 1000):
            claim = self.path.with_name(f"{base}.{number}")
            try:
                fd = os.open(claim, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
            except FileExistsError:
                other = self._read(claim)
                if other is None or self._judge(other, claim) != "stale":
                    return False  # another launcher is taking over: judge its record next
                continue  # its claimant died half-way: the next claim
            with os.fdopen(fd, "w", encoding="utf-8") as f:
                f.write(json.dumps(self._record()) + "\n")
            if _beat_of(self._read() or {}) != _beat_of(stale):
                claim.unlink(missing_ok=True)
                return False  # taken over already (its claims removed): judge the new holder
            os.replace(self._temporary(), self.path)
            for name in os.listdir(self.path.parent):
                if name.startswith(f".{self.path.name}.takeover."):
                    with contextlib.suppress(FileNotFoundError):
                        (self.path.parent / name).unlink()
            return True
        return False

    # ------------------------------------------------------------ holding it

    def _heartbeat(self) -> None:
        failed = ""
        while not self._stop.wait(self.heartbeat_s):
            try:
                self._beat_once()
            except LockLost as e:
                if self._stop.is_set():
                    return
                self.lost = str(e)
                print(f"sparta-hpc: {e}; this launcher stops now", file=sys.stderr, flush=True)
                os._exit(LOCK_LOST_EXIT)
            except OSError as e:  # a file system hiccup: the next beat tries again; check() fences
                if str(e) != failed:
                    print(f"sparta-hpc: heartbeat of {self.path} failed: {e}", file=sys.stderr, flush=True)
                failed = str(e)
            else:
                failed = ""

    def _beat_once(self) -> None:
        self.check()
        record = self._read()
        if record is None or record.get("token") != self.token:
            holder = _show(record) if record else "nobody"
            raise LockLost(f"the lock {self.path} was taken over (it now names {holder})")
        self.beat += 1
        tmp = self._temporary()
        try:
            os.replace(tmp, self.path)
        except OSError:
            tmp.unlink(missing_ok=True)
            raise
        self.last_beat = time.monotonic()

    def check(self) -> None:
        """Raise ``LockLost`` unless this launcher still holds the lock for sure (before writing)."""
        if self.lost is not None:
            raise LockLost(self.lost)
        late = time.monotonic() - self.last_beat
        if late > self.stale_s / 2:
            self.lost = (
                f"the lock {self.path} was last renewed {late:.0f} s ago (this launcher stalled), so another "
                "launcher may have taken the run over"
            )
            raise LockLost(self.lost)

    def release(self) -> None:
        if self._thread is None:
            return
        self._stop.set()
        self._thread.join()
        self._thread = None
        _HELD.pop(self.path, None)
        record = self._read()
        if record is not None and record.get("token") == self.token:
            with contextlib.suppress(FileNotFoundError):
                self.path.unlink()

    def __enter__(self) -> LauncherLock:
        self.acquire()
        return self

    def __exit__(self, *exc: object) -> None:
        self.release()


def check_lock(path: Path) -> None:
    """``LauncherLock.check`` of the lock this process holds on ``path``, if any."""
    lock = _HELD.get(path)
    if lock is not None:
        lock.check()


def _beat_of(record: dict[str, Any]) -> tuple[Any, Any]:
    return record.get("token"), record.get("beat")


def _show(record: dict[str, Any]) -> str:
    """The holder as the error names it: its record without the token and heartbeat count."""
    shown = {k: v for k, v in record.items() if k not in ("token", "beat")}
    return json.dumps(shown) if shown else "unknown"


def _unwritable(path: Path, error: OSError) -> Exception:
    """``RunDirUnwritable`` for a lock file the file system does not let us write; other errors as is."""
    if error.errno in (errno.EROFS, errno.EACCES, errno.EPERM, errno.ENOSPC, errno.EDQUOT):
        return unwritable(path, error.errno)
    return error
