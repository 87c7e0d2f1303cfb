"""Run state, launcher lock, atomic records and the refusal to resume with another config."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from sparta_hpc.config import load_config
from sparta_hpc.errors import ConfigChanged, LockHeld, RecordError, RunDirUnwritable, StateError
from sparta_hpc.files import parse_records, read_jsonl, refused_write, sha256_path, write_jsonl
from sparta_hpc.run.resume import open_state
from sparta_hpc.store.rundir import RunDir
from sparta_hpc.store.state import LauncherLock, RunState, first_invalid_stage, load_state, save_state


def test_state_round_trips_and_rejects_other_schema(tmp_path: Path) -> None:
    run = RunDir(tmp_path)
    state = RunState(config_hash="abc", iterations_total=3)
    state.mark_done(0, "plan", {"iter_000/plan/matches.jsonl": "00"}, {"matches": 4})
    save_state(run, state)
    assert load_state(run) == state
    doc = json.loads(run.state_file.read_text())
    assert doc["schema_version"] == 1 and doc["done"] is False
    doc["schema_version"] = 99
    run.state_file.write_text(json.dumps(doc))
    with pytest.raises(StateError, match="schema_version 99"):
        load_state(run)


def test_invalidate_forgets_the_stage_and_everything_after() -> None:
    state = RunState(config_hash="x", iterations_total=3)
    for t in range(2):
        for stage in ("plan", "generate", "judge", "rate", "train"):
            state.mark_done(t, stage, {}, {})
    state.invalidate(0, "judge")
    assert [s for s in ("plan", "generate", "judge", "rate", "train") if state.is_done(0, s)] == [
        "plan",
        "generate",
    ]
    assert not any(state.is_done(1, s) for s in ("plan", "train"))


def test_first_invalid_stage_finds_changed_and_missing_outputs(tmp_path: Path) -> None:
    run = RunDir(tmp_path)
    a = run.matches(0)
    write_jsonl(a, [{"x": 1}])
    b = run.shard(0, "generate", 0)
    write_jsonl(b, [{"y": 2}])
    state = RunState(config_hash="x", iterations_total=1)
    state.mark_done(0, "plan", {run.relative(a): sha256_path(a)}, {})
    state.mark_done(0, "generate", {run.relative(b): sha256_path(b)}, {})
    assert first_invalid_stage(run, state) is None
    b.write_text(b.read_text()[:-3])
    assert first_invalid_stage(run, state) == (0, "generate")
    a.unlink()
    assert first_invalid_stage(run, state) == (0, "plan")


def test_a_second_launcher_is_refused_naming_the_holder(tmp_path: Path) -> None:
    run = RunDir(tmp_path)
    with LauncherLock(run):
        code = (
            "from sparta_hpc.store.rundir import RunDir\n"
            "from sparta_hpc.store.state import LauncherLock\n"
            f"LauncherLock(RunDir({str(tmp_path)!r})).acquire()"
        )
        proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
        assert proc.returncode != 0
        assert "driven by another launcher" in proc.stderr and '"pid"' in proc.stderr
        with pytest.raises(LockHeld):
            LauncherLock(run).acquire()
    with LauncherLock(run):  # released on exit
        pass


def test_a_run_directory_the_file_system_refuses_is_a_clear_error(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import errno

    from sparta_hpc.store import lock as lock_module

    def read_only(path: object, *args: object, **kwargs: object) -> None:
        raise OSError(errno.EROFS, "Read-only file system", str(path))

    monkeypatch.setattr(lock_module.Path, "write_text", read_only)
    with pytest.raises(RunDirUnwritable) as refused:
        LauncherLock(RunDir(tmp_path)).acquire()
    assert str(refused.value) == (
        f"cannot write to {tmp_path / 'launcher.lock'}: read-only file system (EROFS); "
        "remount it read-write, then run the same command again"
    )


def test_writes_the_file_system_refused_are_recognised_through_libraries_and_causes() -> None:
    import errno

    assert refused_write(OSError(errno.ENOSPC, "No space left on device")) == errno.ENOSPC
    assert refused_write(Exception("No space left on device (os error 28)")) == errno.ENOSPC  # tokenizers
    assert refused_write(RuntimeError("Disk quota exceeded")) == errno.EDQUOT
    try:
        try:
            raise OSError(errno.EROFS, "Read-only file system")
        except OSError as e:
            raise RuntimeError("saving the checkpoint failed") from e
    except RuntimeError as chained:
        assert refused_write(chained) == errno.EROFS
    assert refused_write(ValueError("bad value")) is None
    assert refused_write(OSError(errno.ENOENT, "No such file or directory")) is None


def test_a_full_disk_stops_the_launcher_with_one_message(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from sparta_hpc.run import iteration

    def full(*args: object) -> None:
        raise Exception("No space left on device (os error 28)")  # as tokenizers' Rust code raises it

    monkeypatch.setattr(iteration, "run_iteration", full)
    cfg = load_config(overrides=["run.iterations=1"])
    with pytest.raises(
        RunDirUnwritable, match=r"no space left on device \(ENOSPC; [\d.]+ MiB free\): Exception"
    ):
        iteration.run(cfg, RunDir(tmp_path / "run"), log=lambda s: None)


def test_records_name_file_and_line(tmp_path: Path) -> None:
    path = tmp_path / "r.jsonl"
    path.write_text('{"a": 1}\n\n{"a": 2\n')
    with pytest.raises(RecordError, match=r"r\.jsonl:3: not valid JSON"):
        read_jsonl(path)
    path.write_text('{"a": 1}\n\n{"b": 2}\n')

    def parse(d: dict) -> int:
        return int(d["a"])

    with pytest.raises(RecordError, match=r"r\.jsonl:3: 'a'"):
        parse_records(path, parse)


def test_resume_with_result_changing_config_is_refused_unless_forced(tmp_path: Path) -> None:
    run = RunDir(tmp_path / "run")
    cfg = load_config(overrides=["run.iterations=1"])
    open_state(cfg, run, force=False, log=lambda s: None)
    assert load_config(run.config_file) == cfg
    neutral = load_config(overrides=["run.iterations=2"])
    open_state(neutral, run, force=False, log=lambda s: None)
    changed = load_config(overrides=["run.iterations=2", "plan.alpha=0.1", "generate.max_new_tokens=9"])
    with pytest.raises(ConfigChanged, match="these keys differ: generate.max_new_tokens, plan.alpha"):
        open_state(changed, run, force=False, log=lambda s: None)
    open_state(changed, run, force=True, log=lambda s: None)
    assert load_config(run.config_file).plan.alpha == 0.1


def test_recorded_jobs_round_trip_and_are_forgotten_with_their_stage(tmp_path: Path) -> None:
    run = RunDir(tmp_path)
    state = RunState(config_hash="x", iterations_total=2)
    state.stage_jobs(0, "generate")["0"] = {"job_id": "81_0", "attempts": 1}
    state.stage_jobs(0, "train")["tiny-a"] = {"job_id": "85_0", "attempts": 2}
    state.stage_jobs(1, "plan")["models"] = {"job_id": "90", "attempts": 1}
    state.launcher_job = "80"
    save_state(run, state)
    assert load_state(run) == state
    assert sorted(state.job_ids()) == ["81_0", "85_0", "90"]
    state.invalidate(0, "judge")
    assert state.jobs == {"0": {"generate": {"0": {"job_id": "81_0", "attempts": 1}}}}
