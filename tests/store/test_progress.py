"""Progress files written by jobs and the launcher's heartbeat: atomic, cheap (throttled), never fatal, and
never a record: ``run_chunks`` returns the same records with or without them."""

from __future__ import annotations

import itertools
import json
import os
from pathlib import Path
from typing import Any

import pytest

from sparta_hpc.engines.base import Request
from sparta_hpc.jobs.common import num_chunks, run_chunks
from sparta_hpc.store import progress as pg
from sparta_hpc.store.progress import Heartbeat, UnitProgress, read_heartbeat, read_unit_progress
from sparta_hpc.store.rundir import RunDir

REQUESTS = [Request(request_id=str(i), model="m", prompt="p", seed=0) for i in range(10)]


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def _compute(chunk: list[Request]) -> list[dict[str, Any]]:
    return [{"id": r.request_id, "x": int(r.request_id) * 10} for r in chunk]


def test_a_unit_writes_its_start_throttled_chunks_and_its_end(tmp_path: Path) -> None:
    run, clock = RunDir(tmp_path), Clock()
    path = run.unit_progress(0, "generate", "3")
    progress = UnitProgress(path, "3", "812_3", chunks_total=3, items_total=10, clock=clock)
    progress.write()
    first = read_unit_progress(run, 0, "generate")["3"]
    assert (first["chunks"], first["items"], first["finished"], first["attempt"]) == (
        [0, 3],
        [0, 10],
        False,
        "812_3",
    )
    progress.advance(4)  # within MIN_WRITE_S of the last write: counted, not written
    assert json.loads(path.read_text())["chunks"] == [0, 3]
    clock.now += pg.MIN_WRITE_S
    progress.advance(4)
    assert json.loads(path.read_text())["items"] == [8, 10]
    progress.finish()
    last = json.loads(path.read_text())
    assert (last["chunks"], last["items"], last["finished"]) == ([3, 3], [10, 10], True)
    assert sorted(os.listdir(path.parent)) == ["3.json"]  # no temporary left behind


def test_run_chunks_counts_saved_and_computed_chunks_and_returns_the_same_records(tmp_path: Path) -> None:
    run = RunDir(tmp_path / "run")
    plain = run_chunks(tmp_path / "a.parts", tmp_path / "a.jsonl", REQUESTS, 4, _compute)
    parts = tmp_path / "b.parts"
    parts.mkdir()
    (parts / "chunk_00000.jsonl").write_text("".join(json.dumps(r) + "\n" for r in _compute(REQUESTS[:4])))
    chunks = num_chunks(len(REQUESTS), 4)
    ticks = itertools.count(start=0.0, step=pg.MIN_WRITE_S)  # MIN_WRITE_S between two chunks: each written
    path = run.unit_progress(0, "judge", "0")
    progress = UnitProgress(path, "0", "local-1", chunks, len(REQUESTS), clock=lambda: next(ticks))
    tracked = run_chunks(parts, tmp_path / "b.jsonl", REQUESTS, 4, _compute, progress)
    assert tracked == plain
    record = read_unit_progress(run, 0, "judge")["0"]
    assert (record["chunks"], record["items"], record["finished"]) == ([3, 3], [10, 10], False)
    assert record["found"] == 4, "chunk 0 was found saved, chunks 1 and 2 computed"


def test_unreadable_progress_files_are_skipped(tmp_path: Path) -> None:
    run = RunDir(tmp_path)
    folder = run.progress_dir(1, "evaluate")
    folder.mkdir(parents=True)
    (folder / "0.json").write_text('{"chunks": [1, 2], "items": [3, 4], "updated": "x"}')
    (folder / "1.json").write_text('{"chunks": [1, 2], "items"')  # cut: never written so, but read safely
    (folder / "2.json").write_text('{"chunks": "1/2", "items": [3, 4], "updated": "x"}')
    (folder / ".3.json.ab12.tmp").write_text("{}")
    assert list(read_unit_progress(run, 1, "evaluate")) == ["0"]
    assert read_unit_progress(run, 2, "evaluate") == {}


def test_a_refused_write_never_stops_the_job(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    def full(path: Path, text: str) -> None:
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(pg, "atomic_write_text", full)
    progress = UnitProgress.open(RunDir(tmp_path), 0, "generate", "0", "pid-1", 1, 2)
    progress.advance(2)
    progress.finish()
    Heartbeat(RunDir(tmp_path)).beat()
    assert not (tmp_path / "progress").exists() and read_heartbeat(RunDir(tmp_path)) is None


def test_the_heartbeat_is_rewritten_every_heartbeat_s(tmp_path: Path) -> None:
    run, clock = RunDir(tmp_path), Clock()
    beat = Heartbeat(run, clock=clock)
    beat.beat()
    first = read_heartbeat(run)
    assert first is not None and first["pid"] == os.getpid()
    run.heartbeat_file.write_text('{"time": "old"}')
    clock.now += pg.HEARTBEAT_S / 2
    beat.beat()
    assert json.loads(run.heartbeat_file.read_text()) == {"time": "old"}
    clock.now += pg.HEARTBEAT_S / 2
    beat.beat()
    again = read_heartbeat(run)
    assert again is not None and again["time"] != "old"
