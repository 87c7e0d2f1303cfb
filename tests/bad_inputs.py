"""Helpers of the bad-input tables: an existing run directory to leave alone, its snapshot, and a guard that
fails a test whose input got past the launcher's checks."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest

from sparta_hpc.config import load_config
from sparta_hpc.run import control, iteration
from sparta_hpc.run.resume import open_state
from sparta_hpc.store.rundir import RunDir
from sparta_hpc.store.state import LauncherLock

Snapshot = dict[str, tuple[bytes | None, int]]


def make_run_dir(config: Path, root: Path, overrides: tuple[str, ...] = ()) -> Path:
    """A run directory as a launcher leaves it after opening: config.yaml, state.json and the lock file."""
    run = RunDir(root)
    with LauncherLock(run):
        open_state(load_config(config, list(overrides)), run, False, lambda s: None)
    return root


def copy_run_dir(src: Path, dst: Path) -> Path:
    """A copy with the same contents and mtimes (one per case, so that cases never share a run directory)."""
    return Path(shutil.copytree(src, dst, copy_function=shutil.copy2))


def snapshot(root: Path) -> Snapshot:
    """Every file and folder under ``root`` (itself included): contents (files) and mtime in ns."""
    entries = [root, *sorted(root.rglob("*"))]
    return {
        str(p.relative_to(root)): (p.read_bytes() if p.is_file() else None, os.stat(p).st_mtime_ns)
        for p in entries
    }


@pytest.fixture
def no_work(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """Make running or submitting a tournament fail the test; the list records a run that got through."""
    started: list[str] = []

    def run(cfg: object, run_dir: RunDir, **kwargs: object) -> None:
        started.append(str(run_dir.root))
        raise AssertionError(f"bad input got past the checks: the run in {run_dir.root} started")

    def detach(*args: object) -> None:
        raise AssertionError("bad input got past the checks: the launcher was submitted")

    monkeypatch.setattr(iteration, "run", run)
    monkeypatch.setattr(control, "detach", detach)
    return started
