"""The run-level event log: one JSON line per event, safe with concurrent writers."""

from __future__ import annotations

import multiprocessing
from pathlib import Path

import pytest

from sparta_hpc.store import events
from sparta_hpc.store.rundir import RunDir


def _write_many(root: str, worker: int, n: int) -> None:
    log = events.EventLog(RunDir(root))
    for i in range(n):
        log.emit(events.SUBMITTED, iteration=0, stage="judge", job_id=f"{worker}_{i}", pad="x" * 300)


def test_emit_appends_one_line_with_a_utc_timestamp(tmp_path: Path) -> None:
    run = RunDir(tmp_path)
    log = events.EventLog(run)
    first = log.emit(events.STAGE_START, iteration=0, stage="plan")
    log.emit(events.PREEMPTED, iteration=0, stage="judge", job_id="123_4")
    assert run.events_file.read_text().count("\n") == 2
    read = events.read_events(run)
    assert read[0] == first
    assert read[1]["job_id"] == "123_4" and read[1]["kind"] == "preempted"
    assert first["time"].endswith("Z")
    assert events.parse_time(first["time"]).tzinfo is not None
    with pytest.raises(ValueError, match="reserved"):
        log.emit("x", time="now")


def test_concurrent_writers_never_interleave(tmp_path: Path) -> None:
    ctx = multiprocessing.get_context("fork")
    procs = [ctx.Process(target=_write_many, args=(str(tmp_path), w, 200)) for w in range(4)]
    for p in procs:
        p.start()
    for p in procs:
        p.join()
        assert p.exitcode == 0
    lines = RunDir(tmp_path).events_file.read_text().splitlines()
    assert len(lines) == 800
    read = events.read_events(RunDir(tmp_path))
    assert len(read) == 800
    assert {e["job_id"] for e in read} == {f"{w}_{i}" for w in range(4) for i in range(200)}


def test_reader_skips_a_torn_line_and_counts_per_stage(tmp_path: Path) -> None:
    run = RunDir(tmp_path)
    log = events.EventLog(run)
    log.emit(events.STAGE_START, iteration=1, stage="judge")
    log.emit(events.PREEMPTED, iteration=1, stage="judge", job_id="7_0")
    with open(run.events_file, "a") as f:
        f.write('{"time": "2025-01-01T00:00:00.000Z", "kind": "requ')
        f.write("\n")
        f.write('{"time": "yesterday", "kind": "requeued"}\n[1, 2]\n')
    log.emit(events.RETRIED, iteration=1, stage="judge", job_id="7_0", attempt=2)
    log.emit(events.PREEMPTED, iteration=1, stage="judge", job_id="7_1")
    read = events.read_events(run)
    assert [e["kind"] for e in read] == ["stage_start", "preempted", "retried", "preempted"]
    counts = events.stage_counts(read)
    assert counts[(1, "judge")]["preempted"] == 2 and counts[(1, "judge")]["retried"] == 1
    assert events.last_stage_start(read) == {(1, "judge"): read[0]["time"]}
    assert events.read_events(RunDir(tmp_path / "nothing")) == []
