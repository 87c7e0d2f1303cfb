"""The fault matrix: faults injected into tiny real runs, each of which must end identical to an uninterrupted
run (records, ratings, preference pairs, adapters), after resuming or after a refusal with a clear message.

Cases: the launcher SIGKILLed inside every stage (inline, local subprocess jobs, Slurm), a local job
SIGKILLed mid-write, outputs corrupted after they were recorded, corrupt saved chunks, a full disk, a
read-only run directory, two launchers at once. Each case starts from a snapshot of the shared reference run
just before the stage it breaks (``faults.snapshot``), and adds a row to the matrix printed at the end of the
session (and written to bench/out/fault_matrix.md, or $SPARTA_FAULT_MATRIX_OUT). CI runs a moderate matrix;
``SPARTA_FAULT_MATRIX=full`` runs every stage x several offsets x both backends (bench/fault_matrix.sh).
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from tests.run import faults
from tests.run.faults import FULL, KillPoint
from tests.slurm_cluster import SlurmCluster, slurm_required

pytestmark = pytest.mark.slow


def _ids(cases: list[tuple[str, KillPoint]]) -> list[str]:
    return [f"{backend}-{p.t}-{p.stage}-{p.at.replace(' ', '')}" for backend, p in cases]


# ---------------------------------------------------------------- the killed launcher

POINTS_FULL = {
    "plan": ["start", "files 1"],
    "generate": ["start", "chunk 1", "chunk 2", "chunk 3"],
    "judge": ["start", "chunk 1", "chunk 2", "chunk 3"],
    "rate": ["start", "files 1", "files 3"],
    "train": ["start", "checkpoint", "adapter", "players 1", "players 3"],
    "evaluate": ["start", "unit 0 chunk 1", "units 4", "unit 7 chunk 1"],
}
LAUNCHER_KILLS_CI = [
    # inline kills inside every stage are tests/run/test_pipeline.py's; here the points it does not take
    ("inline", KillPoint(0, "plan", "start")),
    ("inline", KillPoint(1, "train", "checkpoint")),
    # the issue's reproduction: killed in iteration 2's DPO, its local jobs went on writing behind the rerun
    ("local", KillPoint(1, "train", "start")),
    ("local", KillPoint(1, "train", "players 1")),
    ("local", KillPoint(1, "evaluate", "unit 2 chunk 1")),
]
LOCAL_INSTEAD = {"players 3": "players 2"}
"""Local DPO jobs run side by side and end in pairs (2 cores) within milliseconds: 3 of 4 trained is a state
no poll can count on, 2 of 4 (between the pairs) is."""
LAUNCHER_KILLS = (
    [
        (b, KillPoint(t, s, LOCAL_INSTEAD.get(at, at) if b == "local" else at))
        for b in ("inline", "local")
        for t in (0, 1)
        for s, ats in POINTS_FULL.items()
        for at in ats
    ]
    if FULL
    else LAUNCHER_KILLS_CI
)


LAUNCHER_ONLY = {("plan", 1), ("rate", 0), ("rate", 1)}
"""Stages that run in the launcher, without jobs (plan at t = 0 builds the tiny models in a job)."""
ORPHAN_GRACE_S = 2.0
"""A local job sees its launcher gone within ``executor.LOCAL_WAIT_S`` (0.5 s); it may finish the write it is
in, but nothing it writes may be younger than the kill plus this."""


def _job_logs(run_dir: Path) -> str:
    return "".join(p.read_text(errors="replace") for p in sorted(run_dir.glob("jobs/*/*/*_log.out")))


@pytest.mark.parametrize(("backend", "point"), LAUNCHER_KILLS, ids=_ids(LAUNCHER_KILLS))
def test_killed_launcher_resumes_identically(
    mini_reference: Path, tmp_path: Path, backend: str, point: KillPoint
) -> None:
    """SIGKILL the launcher the moment ``point`` holds on disk; prove the kill landed there (and, locally,
    that its jobs ended with it); then the same command again must give the reference's results without
    recomputing anything recorded before the kill."""
    start = time.monotonic()
    run_dir = faults.snapshot(mini_reference, tmp_path / "run", point.t, point.stage)
    log = tmp_path / "killed.log"
    exact = backend == "inline"  # local jobs write in parallel, and on for a moment after the kill
    condition = faults.condition(point, mini_reference, exact)
    with open(log, "w") as out:
        proc = faults.launch(
            run_dir, backend=backend, pause_in=run_dir / f"iter_{point.t:03d}" / point.stage, stdout=out
        )
        ready = lambda: faults.inside(run_dir, point.t, point.stage) and condition(run_dir) is not None  # noqa: E731
        if backend == "local" and point.at == "start" and (point.stage, point.t) not in LAUNCHER_ONLY:
            inside = ready  # and the stage's jobs have started: they must not go on without their launcher
            folder = run_dir / "jobs" / f"iter_{point.t:03d}" / point.stage
            ready = lambda: inside() and bool(faults.alive(faults.job_pids(folder, task_only=True)))  # noqa: E731
        killed = faults.kill_when(proc, ready, log)
    seen = condition(run_dir)
    survivors, waited = faults.wait_jobs_gone(run_dir) if backend == "local" else ([], 0.0)
    late = faults.written_after(run_dir, killed + ORPHAN_GRACE_S) if backend == "local" else {}
    # the launcher and its jobs are gone: what is on disk now is what the kill left
    landed = faults.inside(run_dir, point.t, point.stage)
    damaged = faults.partial_damage(run_dir, mini_reference)
    finished_before = faults.done_files(run_dir)

    code, out = faults.rerun(run_dir, backend=backend)
    divergence = faults.compare(run_dir, mini_reference)
    after = faults.done_files(run_dir)
    rewritten = [f for f, mtime in finished_before.items() if after.get(f) != mtime]
    note = seen.what if seen else "(changed after the kill)"
    if backend == "local":
        note += f"; jobs ended {waited:.1f}s after the kill" + (f", wrote on: {late}" if late else "")
    result = faults.outcome(code, out, "resumed")
    faults.record("killed launcher", backend, point.name, result, divergence, start, note)

    assert landed, f"the kill did not land inside {point.stage}: {faults.events(run_dir)[-3:]}"
    assert not exact or seen is not None, f"the kill did not land where {point.name} wants it"
    assert not survivors, f"local jobs {survivors} of the killed launcher still ran 15 s after the kill"
    assert not late, f"local jobs of the killed launcher wrote on after it: {late}"
    assert code == 0, out[-3000:]
    assert not damaged, f"the kill left damaged files: {damaged}"
    assert not divergence, f"not identical to an uninterrupted run: {divergence}"
    assert not rewritten, f"finished stages were recomputed: {rewritten}"
    if seen is not None and seen.resumed:
        if exact:
            assert seen.resumed in out, f"the run again did not resume after the saved chunks ({seen.what})"
        else:
            prefix = seen.resumed.split(": resuming")[0] + ": resuming after"
            assert prefix in out + _job_logs(run_dir), f"no job resumed after saved chunks ({seen.what})"
    if point.at == "checkpoint" and exact:
        resumed = [
            json.loads(p.read_text())["resumed_from"] for p in run_dir.glob("iter_*/train/*/stats.json")
        ]
        assert f"checkpoint-{faults.SAVE_STEPS}" in resumed, resumed


# ---------------------------------------------------------------- a killed job (local)

JOB_KILLS = (
    [KillPoint(0, "plan", "start"), KillPoint(1, "generate", "chunk 1"), KillPoint(1, "judge", "chunk 2")]
    + [KillPoint(1, "train", "players 1"), KillPoint(1, "evaluate", "unit 2 chunk 1")]
    if FULL
    else [KillPoint(1, "evaluate", "unit 2 chunk 1")]
)


def _temporaries(folder: Path) -> list[Path]:
    return [*folder.rglob(".*.tmp"), *folder.rglob(".*.tmp-*")] if folder.is_dir() else []


def _unit_of(task_pid: int, folder: Path) -> str:
    """The unit a local job task runs: the last argument of its pickled call."""
    import pickle

    try:
        env = Path(f"/proc/{task_pid}/environ").read_bytes().split(b"\0")
        job_id = next(e.split(b"=", 1)[1].decode() for e in env if e.startswith(b"SUBMITIT_LOCAL_JOB_ID="))
        with open(folder / f"{job_id}_submitted.pkl", "rb") as f:
            return str(pickle.load(f).args[-1])
    except (OSError, StopIteration):  # ended meanwhile
        return ""


@pytest.mark.parametrize("point", JOB_KILLS, ids=lambda p: f"{p.t}-{p.stage}-{p.at.replace(' ', '')}")
def test_a_job_killed_mid_write_is_redone(mini_reference: Path, tmp_path: Path, point: KillPoint) -> None:
    """SIGKILL one local job while it writes (a temporary file of its output exists); the launcher stops
    with the job's error, and the same command again completes identically."""
    start = time.monotonic()
    run_dir = faults.snapshot(mini_reference, tmp_path / "run", point.t, point.stage)
    log = tmp_path / "killed.log"
    stage_dir = run_dir / f"iter_{point.t:03d}" / point.stage
    watched = run_dir / "models" if point.stage == "plan" else stage_dir
    folder = run_dir / "jobs" / f"iter_{point.t:03d}" / point.stage
    condition = faults.condition(point, mini_reference, exact=False)
    killed: list[str] = []

    def mid_write() -> bool:
        temps = _temporaries(watched)
        tasks = faults.alive(faults.job_pids(folder, task_only=True))
        if not temps or not tasks or condition(run_dir) is None:
            return False
        writer = temps[0].relative_to(stage_dir).parts[0] if point.stage == "train" else None
        for pid in tasks:  # the job writing (train: the player whose folder holds the temporary)
            if writer is None or _unit_of(pid, folder) == writer:
                os.kill(pid, signal.SIGKILL)
                killed.append(f"pid {pid} writing {temps[0].relative_to(run_dir)}")
                return True
        return False

    with open(log, "w") as out:
        proc = faults.launch(run_dir, backend="local", pause_in=watched, stdout=out)
        faults.wait_for(lambda: mid_write() or proc.poll() is not None, 300, "a job in the middle of a write")
        code = proc.wait(timeout=600)
    stopped = faults.tail(log, 600).strip().splitlines()[-2:] if code else []
    left = [str(p.relative_to(run_dir)) for p in _temporaries(watched)]
    damaged = faults.partial_damage(run_dir, mini_reference)
    rerun_code, out = faults.rerun(run_dir, backend="local")
    divergence = faults.compare(run_dir, mini_reference)
    outcome = faults.outcome(rerun_code, out, "stopped (job lost), resumed" if code else "resubmitted")
    note = f"killed {killed[0] if killed else '-'}; launcher: {' '.join(stopped)[:160]}; left {left[:2]}"
    faults.record("killed job", "local", point.name, outcome, divergence, start, note)

    assert killed, f"the run ended before a job was seen writing:\n{faults.tail(log)}"
    assert code in (0, 1), faults.tail(log)
    assert not code or "failed: ended without a result: its process was killed" in " ".join(stopped), stopped
    assert not damaged, f"the killed job left damaged files: {damaged}"
    assert rerun_code == 0, out[-3000:]
    assert not divergence, f"not identical to an uninterrupted run: {divergence}"


# ---------------------------------------------------------------- corrupted outputs

Corrupt = Callable[[Path], None]


def _truncate(n: int) -> Corrupt:
    return lambda p: p.write_bytes(p.read_bytes()[:-n])


def _halve(p: Path) -> None:
    p.write_bytes(p.read_bytes()[: p.stat().st_size // 2])


def _zero_fill(p: Path) -> None:
    p.write_bytes(b"\0" * p.stat().st_size)


def _drop_last_line(p: Path) -> None:
    p.write_bytes(b"".join(p.read_bytes().splitlines(keepends=True)[:-1]))


def _edit_number(p: Path) -> None:
    text = p.read_text()
    i = next(i for i, c in enumerate(text) if c.isdigit() and c != "9")
    p.write_text(text[:i] + str(int(text[i]) + 1) + text[i + 1 :])


OUTPUT_CORRUPTIONS: dict[str, tuple[str, Corrupt]] = {
    "judge shard truncated": ("iter_001/judge/shard_00000.jsonl", _truncate(40)),
    "ratings file edited": ("iter_001/rate/ratings.json", _edit_number),
    "adapter weights truncated": ("iter_000/train/tiny-b/adapter/adapter_model.safetensors", _halve),
}
if FULL:
    OUTPUT_CORRUPTIONS |= {
        "generate shard lost a line": ("iter_001/generate/shard_00000.jsonl", _drop_last_line),
        "matches zero-filled": ("iter_001/plan/matches.jsonl", _zero_fill),
        "preferences lost a line": ("iter_000/rate/preferences.jsonl", _drop_last_line),
        "evaluation records truncated": ("iter_001/evaluate/iter_1/tiny-c/test_00000.jsonl", _truncate(10)),
        "adapter config edited": ("iter_001/train/tiny-a/adapter/adapter_config.json", _edit_number),
        "adapter deleted": ("iter_000/train/tiny-d/adapter/adapter_model.safetensors", lambda p: p.unlink()),
    }


@pytest.mark.parametrize("case", list(OUTPUT_CORRUPTIONS))
def test_corrupted_output_is_detected_and_redone(mini_reference: Path, tmp_path: Path, case: str) -> None:
    start = time.monotonic()
    rel, corrupt = OUTPUT_CORRUPTIONS[case]
    run_dir = tmp_path / "run"
    shutil.copytree(mini_reference, run_dir)
    corrupt(run_dir / rel)
    code, out = faults.rerun(run_dir)
    divergence = faults.compare(run_dir, mini_reference)
    t, stage = int(rel[5:8]), rel.split("/")[1]
    message = (
        f"[iter {t}] {stage}: outputs are missing or changed since they were recorded; redoing from here"
    )
    note = message if message in out else "no message"
    result = faults.outcome(code, out, "redone")
    faults.record("corrupt output", "inline", f"{case}: {rel}", result, divergence, start, note)
    assert code == 0, out[-3000:]
    assert message in out, out[-2000:]
    assert not divergence, f"not identical to an uninterrupted run: {divergence}"


# ---------------------------------------------------------------- corrupt saved chunks


def _chunk_from_reference(run_dir: Path, reference: Path, unit: str, size: int, chunk: int) -> Path:
    """Save chunk ``chunk`` of a unit as a job would have, from the reference's unit file."""
    lines = (reference / unit).read_bytes().splitlines(keepends=True)
    path = run_dir / Path(unit).with_suffix(".parts") / f"chunk_{chunk:05d}.jsonl"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(b"".join(lines[chunk * size : (chunk + 1) * size]))
    return path


CHUNK_CORRUPTIONS: dict[str, tuple[str, int, Corrupt]] = {
    "generate chunk cut mid-line": ("iter_001/generate/shard_00000.jsonl", 1, _truncate(25)),
    "evaluate chunk zero-filled": ("iter_001/evaluate/iter_1/tiny-b/val_00000.jsonl", 0, _zero_fill),
}
if FULL:
    CHUNK_CORRUPTIONS |= {
        "generate chunk lost a line": ("iter_001/generate/shard_00000.jsonl", 2, _drop_last_line),
        "generate chunk emptied": ("iter_000/generate/shard_00000.jsonl", 0, lambda p: p.write_bytes(b"")),
        "evaluate chunk holds an array": (
            "iter_001/evaluate/iter_1/tiny-a/test_00000.jsonl",
            0,
            lambda p: p.write_text("[1]\n" * 8),
        ),
    }


@pytest.mark.parametrize("case", list(CHUNK_CORRUPTIONS))
def test_corrupt_chunk_is_computed_again(mini_reference: Path, tmp_path: Path, case: str) -> None:
    """A unit's saved chunks, one of them corrupt: the job recomputes that chunk, and only that one."""
    start = time.monotonic()
    unit, bad, corrupt = CHUNK_CORRUPTIONS[case]
    t, stage = int(unit[5:8]), unit.split("/")[1]
    run_dir = faults.snapshot(mini_reference, tmp_path / "run", t, stage)
    size = faults.GEN_CHUNK if stage == "generate" else faults.EVAL_CHUNK
    for i in range(bad + 1):
        path = _chunk_from_reference(run_dir, mini_reference, unit, size, i)
    corrupt(path)
    code, out = faults.rerun(run_dir)
    divergence = faults.compare(run_dir, mini_reference)
    said = f"{path.resolve()}: corrupt ("
    note = next((line for line in out.splitlines() if said in line), "no message").split(": ", 1)[-1]
    result = faults.outcome(code, out, "recomputed")
    faults.record("corrupt chunk", "inline", f"{case}: {unit} chunk {bad}", result, divergence, start, note)
    assert code == 0, out[-3000:]
    assert said in out and "computing it again" in out, out[-2000:]
    assert f"resuming after {bad + 1}/" in out
    assert not divergence, f"not identical to an uninterrupted run: {divergence}"


# ---------------------------------------------------------------- the run directory's file system


def _mount(*args: str) -> None:
    subprocess.run(["mount", *args], check=True, capture_output=True, text=True)


@pytest.fixture
def tmpfs(tmp_path: Path) -> Iterator[Path]:
    """A 64 MiB tmpfs this test mounts (root only), resized or made read-only by the test."""
    where = tmp_path / "fs"
    where.mkdir()
    try:
        if os.geteuid() != 0:
            raise PermissionError("not root")
        _mount("-t", "tmpfs", "-o", "size=64m", "tmpfs", str(where))
    except (OSError, subprocess.CalledProcessError) as e:
        reason = f"cannot mount a tmpfs: {getattr(e, 'stderr', None) or e}"
        if slurm_required():  # CI runs as root, where mounting works: never skip there
            pytest.fail(reason)
        pytest.skip(reason)
    try:
        yield where
    finally:
        subprocess.run(["umount", "-l", str(where)], check=False, capture_output=True)


def _stopped_in(run_dir: Path) -> str:
    started = [(e["iteration"], e["stage"]) for e in faults.events(run_dir) if e["kind"] == "stage_start"]
    return f"iter {started[-1][0]} {started[-1][1]}" if started else "before any stage"


DISK_FULL = [("inline", 200)] + ([("inline", 24), ("inline", 330), ("local", 200)] if FULL else [])
"""Backend, and KiB left free after copying the snapshot: 200 fill up during iteration 1's DPO (adapters and
trainer checkpoints), 24 during generation or judging, 330 during evaluation."""


@pytest.mark.parametrize(("backend", "free_kib"), DISK_FULL, ids=[f"{b}-{k}KiB" for b, k in DISK_FULL])
def test_a_full_disk_stops_with_enospc_then_resumes(
    mini_reference: Path, tmpfs: Path, backend: str, free_kib: int
) -> None:
    start = time.monotonic()
    run_dir = faults.snapshot(mini_reference, tmpfs / "run", 1, "generate")
    _mount("-o", f"remount,size={shutil.disk_usage(tmpfs).used + free_kib * 1024}", str(tmpfs))
    proc = faults.launch(run_dir, backend=backend)
    out, _ = proc.communicate(timeout=600)
    where = _stopped_in(run_dir)
    damaged = faults.partial_damage(run_dir, mini_reference)
    error = next((line for line in out.splitlines() if line.startswith("error: ")), "")
    _mount("-o", "remount,size=64m", str(tmpfs))
    code, again = faults.rerun(run_dir, backend=backend)
    divergence = faults.compare(run_dir, mini_reference)
    point = f"{free_kib} KiB free: stopped in {where}"
    result = faults.outcome(code, again, "stopped (ENOSPC), resumed")
    faults.record("disk full", backend, point, result, divergence, start, error[:200])

    assert proc.returncode == 1, out[-3000:]
    assert error.startswith(f"error: cannot write to {run_dir}: no space left on device (ENOSPC"), out[-3000:]
    assert "run the same command again" in out and "Traceback" not in out
    assert where.startswith("iter 1 "), f"the disk filled up before iteration 1 started: {where}"
    assert not damaged, f"the full disk left damaged files: {damaged}"
    assert code == 0, again[-3000:]
    assert not divergence, f"not identical to an uninterrupted run: {divergence}"


def _tree(root: Path) -> dict[str, tuple[int, int]]:
    return {str(p): (p.stat().st_size, p.stat().st_mtime_ns) for p in sorted(root.rglob("*"))}


def test_a_read_only_run_directory_is_refused_then_resumes(mini_reference: Path, tmpfs: Path) -> None:
    start = time.monotonic()
    point = KillPoint(1, "evaluate", "unit 1 chunk 1")
    run_dir = faults.snapshot(mini_reference, tmpfs / "run", point.t, point.stage)
    log = tmpfs.parent / "killed.log"
    condition = faults.condition(point, mini_reference)
    with open(log, "w") as out:  # a partial run: killed in the middle of the evaluation
        proc = faults.launch(run_dir, pause_in=run_dir / "iter_001/evaluate", stdout=out)
        faults.kill_when(proc, lambda: condition(run_dir) is not None, log)
    _mount("-o", "remount,ro", str(tmpfs))
    before = _tree(run_dir)
    proc = faults.launch(run_dir)
    out, _ = proc.communicate(timeout=600)
    after = _tree(run_dir)
    error = next((line for line in out.splitlines() if line.startswith("error: ")), "")
    _mount("-o", "remount,rw", str(tmpfs))
    code, again = faults.rerun(run_dir)
    divergence = faults.compare(run_dir, mini_reference)
    result = faults.outcome(code, again, "refused, resumed")
    faults.record(
        "read-only", "inline", f"after a kill at {point.name}", result, divergence, start, error[:200]
    )

    assert proc.returncode == 1 and "Traceback" not in out, out[-3000:]
    assert error == (
        f"error: cannot write to {run_dir / 'launcher.lock'}: read-only file system (EROFS); "
        "remount it read-write, then run the same command again"
    ), out[-3000:]
    assert after == before, "the refused launcher changed the run directory"
    assert code == 0, again[-3000:]
    assert not divergence, f"not identical to an uninterrupted run: {divergence}"


# ---------------------------------------------------------------- two launchers


def test_two_launchers_at_once_one_runs_the_other_is_refused(mini_reference: Path, tmp_path: Path) -> None:
    start = time.monotonic()
    run_dir = faults.snapshot(mini_reference, tmp_path / "run", 1, "evaluate")
    logs = [tmp_path / "first.log", tmp_path / "second.log"]
    files = [open(log, "w") for log in logs]  # noqa: SIM115
    try:
        procs = [faults.launch(run_dir, stdout=f) for f in files]
        codes = [p.wait(timeout=600) for p in procs]
    finally:
        for f in files:
            f.close()
    outs = [log.read_text() for log in logs]
    divergence = faults.compare(run_dir, mini_reference)
    refused = [o for o, c in zip(outs, codes, strict=True) if c != 0]
    error = next((line for o in refused for line in o.splitlines() if line.startswith("error: ")), "")
    faults.record(
        "two launchers",
        "inline",
        "both started at once (iter 1 evaluate)",
        "one ran, one refused",
        divergence,
        start,
        error[:200],
    )

    assert sorted(codes) == [0, 1], outs
    winner = procs[codes.index(0)].pid
    assert error.startswith(f"error: run directory {run_dir} is driven by another launcher ("), error
    holder = json.loads(error.split("launcher (", 1)[1].rsplit("); wait", 1)[0])
    assert holder["pid"] == winner, (holder, winner)
    assert not divergence, f"not identical to an uninterrupted run: {divergence}"


# ---------------------------------------------------------------- Slurm: the killed launcher reattaches

SLURM_KILLS = [KillPoint(1, "generate", "chunk 1"), KillPoint(1, "train", "players 1")] + (
    [KillPoint(1, "judge", "start"), KillPoint(1, "evaluate", "unit 2 chunk 1")] if FULL else []
)
SLURM_PAUSE_S = 2.0
"""Each job write pauses this long, so that the jobs the killed launcher left are alive when the next one
starts (about 3 s) and it reattaches to them rather than only collecting their results."""


@pytest.mark.slurm
@pytest.mark.parametrize("point", SLURM_KILLS, ids=lambda p: f"{p.t}-{p.stage}-{p.at.replace(' ', '')}")
def test_killed_slurm_launcher_reattaches_and_resumes_identically(
    slurm_cluster: SlurmCluster, mini_reference: Path, tmp_path: Path, point: KillPoint
) -> None:
    start = time.monotonic()
    run_dir = faults.snapshot(mini_reference, tmp_path / "run", point.t, point.stage)
    log = tmp_path / "killed.log"
    poll = "cluster.poll_interval_s=1"
    condition = faults.condition(point, mini_reference, exact=False)
    stage_dir = run_dir / f"iter_{point.t:03d}" / point.stage
    try:
        with open(log, "w") as out:
            proc = faults.launch(
                run_dir,
                poll,
                backend="slurm",
                options=tuple(faults.SLURM),
                pause_in=stage_dir,
                pause_s=SLURM_PAUSE_S,
                stdout=out,
            )
            ready = lambda: faults.inside(run_dir, point.t, point.stage) and condition(run_dir) is not None  # noqa: E731
            faults.kill_when(proc, ready, log)
        seen = condition(run_dir)
        code, out = faults.rerun(run_dir, poll, backend="slurm", options=tuple(faults.SLURM))
    finally:
        if (run_dir / "state.json").exists():  # no job of a failed case runs on
            ids = [
                r["job_id"]
                for s in faults.state(run_dir).get("jobs", {}).values()
                for u in s.values()
                for r in u.values()
            ]
            subprocess.run(["scancel", *ids], check=False, capture_output=True)
    divergence = faults.compare(run_dir, mini_reference)
    reattached = [line.split(": ", 1)[-1] for line in out.splitlines() if "reattached to" in line]
    submitted = [
        e for e in faults.events(run_dir)
        if e["kind"] == "submitted" and (e.get("iteration"), e.get("stage")) == (point.t, point.stage)
    ]  # fmt: skip
    note = f"{seen.what if seen else ''}; {'reattached to ' + reattached[0] if reattached else 'no live job'}"
    faults.record(
        "killed launcher", "slurm", point.name, faults.outcome(code, out, "resumed"), divergence, start, note
    )
    assert code == 0, out[-3000:]

    assert reattached, f"the run again did not reattach to the killed launcher's live jobs:\n{out[-3000:]}"
    assert len(submitted) == 1, f"the killed stage's units were submitted again: {submitted}"
    assert not divergence, f"not identical to an uninterrupted run: {divergence}"
