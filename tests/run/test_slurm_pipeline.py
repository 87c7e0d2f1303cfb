"""The tournament on the real Slurm test cluster (slurm/testcluster.sh), no mocks: results equal to a local
run, a real preemption of a generation task and of DPO jobs mid-training, scancel of one array task, a DPO
time limit, a SIGKILLed launcher, a job that raises, --detach and cancel. Every run directory is in tmp_path.

Tiny configs keep the file at a few minutes on 2 cores: each Slurm job spends ~3-5 s importing torch. A job
that a test cancels, or that a relaunched launcher must find alive, is held by a setup line until the test
creates a release file (``hold``), so that no outcome depends on how fast the machine is. No test asserts a
duration: the waits are bounded, and the assertions are about what happened.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from tests.slurm_cluster import SlurmCluster

ROOT = Path(__file__).resolve().parents[2]
FAST = [
    "run.iterations=1",
    "plan.num_prompts=8",
    "generate.max_new_tokens=8",
    "train.max_length=64",
    "generate.num_shards=2",
    "judge.num_shards=2",
    "generate.chunk_size=4",
    "judge.chunk_size=8",
    "cluster.poll_interval_s=1",
]
"""One iteration with evaluation; generate and judge are 2-task arrays, train a 4-task array."""
SLOW = [
    "run.iterations=1",
    "plan.num_prompts=16",
    "generate.max_new_tokens=128",
    "generate.chunk_size=2",
    "train.max_length=64",
    "train.epochs=6",
    "train.save_steps=4",
    "eval.every=0",
    "cluster.poll_interval_s=1",
]
"""Slow enough to preempt: generation in 16 chunks (~5 s), 96 DPO steps per player, a checkpoint every 4."""
RESULT_GLOBS = (
    "iter_*/plan/matches.jsonl",
    "iter_*/*/shard_*.jsonl",
    "iter_*/rate/*.json*",
    "iter_*/train/*/adapter/*.safetensors",
    "iter_*/evaluate/*/*/*.jsonl",
)
STAGES_WITH_JOBS = ("plan", "generate", "judge", "train", "evaluate")
POLL_S = 3.0
"""``cluster.poll_interval_s`` of the sacct query test: 3 file checks (``FILE_CHECK_S`` = 1 s) per poll."""
JOBS_DONE = re.compile(r"\[iter \d+\] (\w+) +jobs done: (\d+) sacct queries in ([\d.]+)s")
"""The launcher's line at the end of each stage on Slurm."""

pytestmark = [pytest.mark.slurm, pytest.mark.slow]


# ---------------------------------------------------------------- helpers


def launch(run_dir: Path, overrides: list[str], *extra: str, backend: str = "slurm", path: str = "") -> Any:
    cmd = [sys.executable, str(ROOT / "launch.py"), "--cluster", backend, "--cluster-preset", "local-slurm"]
    cmd += ["--run-dir", str(run_dir), *extra, *overrides]
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "TOKENIZERS_PARALLELISM": "false"}
    if path:
        env["PATH"] = f"{path}{os.pathsep}{env['PATH']}"
    return subprocess.Popen(
        cmd, cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True
    )


def finish(proc: Any, code: int = 0) -> str:
    out, _ = proc.communicate(timeout=600)
    assert proc.returncode == code, out[-4000:]
    return out


def run_to_end(run_dir: Path, overrides: list[str], **kwargs: Any) -> str:
    return finish(launch(run_dir, overrides, **kwargs))


def results(run_dir: Path) -> dict[str, bytes]:
    """Every record, rating file, adapter file and evaluation record (no temporary files)."""
    files = {p for g in RESULT_GLOBS for p in run_dir.glob(g) if p.is_file() and not p.name.startswith(".")}
    return {str(p.relative_to(run_dir)): p.read_bytes() for p in sorted(files)}


def state(run_dir: Path) -> dict[str, Any]:
    return json.loads((run_dir / "state.json").read_text())


def events(run_dir: Path, kind: str, stage: str | None = None) -> list[dict[str, Any]]:
    path = run_dir / "events.jsonl"
    found = [json.loads(line) for line in path.read_text().splitlines()] if path.exists() else []
    return [e for e in found if e["kind"] == kind and stage in (None, e.get("stage"))]


def wait_until(
    condition: Callable[[], Any], timeout_s: float, what: str, proc: Any = None, fail: bool = True
) -> bool:
    """Poll ``condition()`` every 0.1 s; False (or a failure) after ``timeout_s``; fails if ``proc`` ended."""
    start = time.monotonic()
    while not condition():
        if proc is not None and proc.poll() is not None:
            pytest.fail(f"the launcher ended while waiting for {what}:\n{proc.stdout.read()[-3000:]}")
        if time.monotonic() - start > timeout_s:
            if fail:
                pytest.fail(f"timed out after {timeout_s:.0f} s waiting for {what}")
            return False
        time.sleep(0.1)
    return True


def submissions(run_dir: Path, since: str) -> dict[str, list[str]]:
    """``{stage folder: [job ids]}`` of every job sacct says was submitted from this run directory."""
    cmd = ["sacct", "-X", "-n", "-P", "-S", since, "-o", "JobID,SubmitLine"]
    out = subprocess.run(cmd, capture_output=True, text=True).stdout
    found: dict[str, list[str]] = {}
    for line in out.splitlines():
        job_id, _, submit = line.partition("|")
        if str(run_dir) in submit:
            folder = Path(submit.split()[-1]).parent.name
            found.setdefault(folder, []).append(job_id)
    return found


def sacct_states(job_id: str) -> list[str]:
    """Every state sacct recorded for one job or task, requeued runs included, once the last run has ended
    (a job writes its result before its process exits, so sacct may still say RUNNING for a moment)."""
    cmd = ["sacct", "-X", "-D", "-n", "-P", "-o", "State", "-j", job_id]

    def states() -> list[str]:
        out = subprocess.run(cmd, capture_output=True, text=True).stdout
        return [line.split()[0] for line in out.splitlines() if line.strip()]

    wait_until(lambda: states()[-1:] not in ([], ["RUNNING"], ["COMPLETING"]), 30, f"the end of job {job_id}")
    return states()


def hold(stage: str, release: Path) -> str:
    """The override of a ``setup`` line that holds each of the stage's jobs RUNNING (before its Python starts)
    until ``release`` exists, at most 5 minutes: a job cancelled before the test creates the file is provably
    alive at the cancel, however slow or fast the machine."""
    return f"cluster.{stage}.setup=['timeout 300 sh -c \"until test -e {release}; do sleep 0.2; done\"']"


def live(*job_ids: str) -> bool:
    """Whether sacct lists every one of the jobs (or array tasks) as queued or running."""
    from sparta_hpc.cluster.sacct import Sacct

    statuses = Sacct().query(job_ids) or {}
    return all(j in statuses and statuses[j].live for j in job_ids)


def ended_state(job_id: str) -> str:
    """The state of a job or array task once sacct says it ended. Unlike ``sacct_states`` it reads the
    array's line of a task cancelled while pending (``812_[0-1]``), which has no line of its own."""
    from sparta_hpc.cluster.sacct import Sacct

    seen: dict[str, Any] = {}

    def ended() -> bool:
        seen["status"] = (Sacct().query([job_id]) or {}).get(job_id)
        return seen["status"] is not None and not seen["status"].live

    wait_until(ended, 30, f"sacct to list job {job_id} as ended")
    return str(seen["status"].state)


def preempt(cluster: SlurmCluster) -> str:
    """Submit a job to the high partition that needs every CPU of the node: Slurm preempts the debug jobs."""
    cmd = ["sbatch", "--parsable", "-p", "high", "-c", str(cluster.cpus), "--mem=512M", "-J", "preempter"]
    cmd += ["-o", "/dev/null", "--wrap", "sleep 2"]
    return subprocess.run(cmd, capture_output=True, text=True, check=True).stdout.strip()


@pytest.fixture
def cluster(slurm_cluster: SlurmCluster) -> SlurmCluster:
    if not {"debug", "high"} <= set(slurm_cluster.partitions):
        pytest.skip("needs the test cluster's partitions debug and high (slurm/testcluster.sh)")
    return slurm_cluster


@pytest.fixture(scope="module")
def reference(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The FAST tournament run locally (in one process) with the same config and threads."""
    run_dir = tmp_path_factory.mktemp("reference") / "run"
    run_to_end(run_dir, FAST, backend="inline")
    return run_dir


def copy_run(reference: Path, to: Path, *stages: str) -> Path:
    """A copy of the reference run as if stopped before ``stages`` of iteration 0: their folders deleted and
    the state not recording them (nor the iteration as committed)."""
    shutil.copytree(reference, to)
    doc = state(to)
    for stage in stages:
        shutil.rmtree(to / "iter_000" / stage)
        doc["stages"]["0"].pop(stage)
    doc["iteration"], doc["done"] = 0, False
    (to / "state.json").write_text(json.dumps(doc))
    return to


# ---------------------------------------------------------------- the tests


def test_slurm_run_equals_local_run_with_one_query_per_poll(
    cluster: SlurmCluster, reference: Path, tmp_path: Path
) -> None:
    """Every sacct call the launcher makes is logged by a wrapper on PATH and checked against the loop's
    contract: one call per ``poll_interval_s`` (here 3 file checks of ``FILE_CHECK_S``), naming the live
    array once, and counted right in the launcher's own ``N sacct queries in X s`` line of each stage."""
    from sparta_hpc.run.scheduler import FILE_CHECK_S

    shim = tmp_path / "bin"
    shim.mkdir()
    calls = tmp_path / "sacct_calls"
    for name in ("sacct", "squeue"):
        (shim / name).write_text(
            f'#!/bin/sh\necho "$(date +%s.%N) {name} $*" >> {calls}\nexec {shutil.which(name)} "$@"\n'
        )
        (shim / name).chmod(0o755)
    run_dir = tmp_path / "run"
    out = run_to_end(run_dir, [*FAST, f"cluster.poll_interval_s={POLL_S:g}"], path=str(shim))

    assert results(run_dir) == results(reference)
    assert state(run_dir)["ratings"] == state(reference)["ratings"]
    submitted = events(run_dir, "submitted")
    assert [e["stage"] for e in submitted] == list(STAGES_WITH_JOBS), out[-3000:]
    assert not events(run_dir, "retried"), out[-3000:]  # so each stage's array is the only live one
    stage_of = {e["job_id"]: e["stage"] for e in submitted}
    polls: dict[str, list[float]] = {stage: [] for stage in STAGES_WITH_JOBS}
    for line in calls.read_text().splitlines():
        when, name, *argv = line.split()
        assert name == "sacct", f"the launcher only ever calls sacct: {line}"
        assert argv[-2] == "-j", line
        named = argv[-1].split(",")
        assert len(named) == 1 and named[0] in stage_of, f"a poll names its stage's live array once: {line}"
        polls[stage_of[named[0]]].append(float(when))
    reported = {m[1]: (int(m[2]), float(m[3])) for m in JOBS_DONE.finditer(out)}
    assert list(reported) == list(STAGES_WITH_JOBS), out[-3000:]
    print(f"\nsacct calls / seconds per stage (poll {POLL_S:g} s, file check {FILE_CHECK_S:g} s):")
    print(", ".join(f"{stage} {count} / {seconds:.1f}" for stage, (count, seconds) in reported.items()))
    assert {s: len(p) for s, p in polls.items()} == {s: n for s, (n, _) in reported.items()}, (
        "the launcher's sacct counter must equal the calls sacct received"
    )
    for stage, (count, seconds) in reported.items():
        # The first poll comes POLL_S after the submission, each next one POLL_S after the last returned: at
        # most seconds / POLL_S of them, where polling at every file check would make ~seconds / FILE_CHECK_S.
        assert count <= (seconds + 0.1) / POLL_S, (stage, count, seconds)
        gaps = [b - a for a, b in zip(polls[stage], polls[stage][1:], strict=False)]
        assert all(gap >= POLL_S - 0.1 for gap in gaps), (stage, gaps)
        # And no poll skipped: one at least every POLL_S + a file check (+ 1 s of slack for a loaded machine),
        # the first after the submission (+ 2 s of slack for sbatch).
        expected = (seconds - POLL_S - 2.0) // (POLL_S + FILE_CHECK_S + 1.0)
        assert count >= expected, (stage, count, seconds)


def test_killed_launcher_reattaches_without_duplicate_submissions(
    cluster: SlurmCluster, reference: Path, tmp_path: Path
) -> None:
    run_dir, since = tmp_path / "run", time.strftime("%Y-%m-%dT%H:%M:%S", time.localtime(time.time() - 1))
    release = tmp_path / "release"  # until it exists, the DPO jobs are held alive: the relaunch finds them
    overrides = [*FAST, hold("train", release)]
    proc = launch(run_dir, overrides)

    def train_jobs() -> list[str]:
        found = state(run_dir)["jobs"] if (run_dir / "state.json").exists() else {}
        return [r["job_id"] for r in found.get("0", {}).get("train", {}).values()]

    wait_until(lambda: len(train_jobs()) == 4 and live(*train_jobs()), 240, "the DPO jobs to be listed", proc)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    proc.stdout.close()
    again = launch(run_dir, overrides)
    lines: list[str] = []

    def read() -> None:
        for line in again.stdout:
            lines.append(line)

    reader = threading.Thread(target=read, daemon=True)
    reader.start()
    try:
        wait_until(lambda: any("reattached to" in line for line in lines), 120, "the relaunch to reattach")
    except BaseException:
        again.kill()  # a failed test leaves no launcher running on
        raise
    finally:
        release.touch()
    again.wait(timeout=600)
    reader.join(timeout=10)
    out = "".join(lines)
    assert again.returncode == 0, out[-4000:]

    reattached = [line.split(": ")[-1].strip().split(", ") for line in lines if "reattached to" in line]
    assert [sorted(ids) for ids in reattached] == [sorted(train_jobs())], out[-4000:]
    assert results(run_dir) == results(reference)
    submitted = submissions(run_dir, since)
    arrays = {stage: {j.split("_")[0] for j in ids} for stage, ids in submitted.items()}
    assert {stage: len(ids) for stage, ids in arrays.items()} == dict.fromkeys(STAGES_WITH_JOBS, 1), submitted
    assert {stage: len(ids) for stage, ids in submitted.items()} == {
        "plan": 1,
        "generate": 2,
        "judge": 2,
        "train": 4,
        "evaluate": 1,
    }


def test_preempted_generation_and_dpo_resume_from_saved_progress(
    cluster: SlurmCluster, tmp_path: Path
) -> None:
    local = tmp_path / "local"
    run_to_end(local, SLOW, backend="inline")
    run_dir = tmp_path / "run"
    proc = launch(run_dir, SLOW)
    parts = run_dir / "iter_000" / "generate" / "shard_00000.parts"
    wait_until(lambda: len(list(parts.glob("chunk_*.jsonl"))) >= 2, 240, "generation to save 2 chunks", proc)
    preempt(cluster)
    wait_until(lambda: events(run_dir, "preempted", "generate"), 60, "the generation job's requeue", proc)
    train = run_dir / "iter_000" / "train"

    def training_half_done() -> bool:  # a player with a checkpoint in its first half, still training
        saved = train.glob("*/work/*/checkpoint-*/trainer_state.json")  # work/<attempt>/checkpoint-N
        return any(
            int(p.parent.name.split("-")[1]) <= 48 and not (p.parents[3] / "stats.json").exists()
            for p in saved
        )

    for _ in range(4):  # a DPO job may end between the look and the preemption: try the next one
        wait_until(lambda: training_half_done() or proc.poll() is not None, 240, "a DPO checkpoint", proc)
        preempt(cluster)
        if wait_until(lambda: events(run_dir, "preempted", "train"), 20, "", None, fail=False):
            break
    finish(proc)

    assert results(run_dir) == results(local), "a preempted run must end identical to an uninterrupted one"
    generate_job = events(run_dir, "preempted", "generate")[0]["job_id"]
    log = (run_dir / "jobs" / "iter_000" / "generate" / f"{generate_job}_0_log.out").read_text()
    resumed = [line for line in log.splitlines() if "resuming after" in line]
    assert resumed and int(resumed[0].split("resuming after ")[1].split("/")[0]) >= 2, log[-2000:]
    preempted = {e["job_id"] for e in events(run_dir, "preempted", "train")}
    assert preempted, "no DPO job was preempted"
    stats = [json.loads(p.read_text()) for p in train.glob("*/stats.json")]
    assert any((s["resumed_from"] or "").startswith("checkpoint-") for s in stats), stats
    for job_id in {generate_job} | preempted:
        states = sacct_states(job_id)
        assert {"PREEMPTED", "REQUEUED"} & set(states) and states[-1] == "COMPLETED", states


def _runner(run_dir: Path, overrides: list[str], log: list[str]) -> Any:
    """The launcher's stage runner for a copied run, on Slurm."""
    from sparta_hpc.config import load_config
    from sparta_hpc.run.scheduler import Runner
    from sparta_hpc.store.rundir import RunDir
    from sparta_hpc.store.state import load_state

    run = RunDir(run_dir)
    cfg = load_config(run.config_file, ["cluster.backend=slurm", *overrides], preset="local-slurm")
    loaded = load_state(run)
    assert loaded is not None
    return Runner(cfg, run, loaded, log.append)


def test_scancel_of_one_array_task_resubmits_just_that_shard(
    cluster: SlurmCluster, reference: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from sparta_hpc.cluster.sacct import Sacct
    from sparta_hpc.run import iteration

    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    run_dir = copy_run(reference, tmp_path / "run", "generate")
    log: list[str] = []
    release = tmp_path / "release"  # until it exists, every generate task is held RUNNING in its setup line
    ex = _runner(run_dir, ["cluster.poll_interval_s=1", hold("generate", release)], log)
    outcome: dict[str, Any] = {}
    thread = threading.Thread(target=lambda: outcome.update(r=iteration.generate(0, ex.cfg, ex.run_dir, ex)))
    thread.start()
    try:
        book = ex.state.stage_jobs(0, "generate")
        wait_until(lambda: "1" in book, 60, "the generate array to be submitted")
        first = book["1"]["job_id"]
        sacct = Sacct()
        wait_until(lambda: (sacct.query([first]) or {}).get(first) is not None, 60, f"{first} to be listed")
        wait_until(lambda: sacct.query([first])[first].state == "RUNNING", 60, f"{first} to run")  # type: ignore[index]
        subprocess.run(["scancel", first], check=True)  # held, not released: it is alive, whatever the timing
        wait_until(lambda: not live(first), 30, f"{first} to end")
    finally:
        release.touch()  # the other task and the resubmitted one may run now
    thread.join(timeout=180)

    assert not thread.is_alive() and "r" in outcome, log
    assert sacct_states(first) == ["CANCELLED"]
    retried = events(run_dir, "retried", "generate")
    assert [(e["unit"], e["previous"], e["attempt"]) for e in retried] == [("1", first, 2)], log
    assert [e["num_tasks"] for e in events(run_dir, "submitted", "generate")] == [2, 1]
    assert book["0"]["attempts"] == 1 and book["1"]["attempts"] == 2
    assert results(run_dir) == results(reference)


def test_time_limit_requeues_dpo_from_its_checkpoint(
    cluster: SlurmCluster, reference: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from omegaconf import OmegaConf

    from sparta_hpc import jobs
    from sparta_hpc.run.scheduler import StageJobs

    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    run_dir = copy_run(reference, tmp_path / "run", "train", "evaluate")
    config = OmegaConf.load(run_dir / "config.yaml")
    config.train.epochs, config.train.save_steps = 300, 100  # 2400 steps, > 45 s: past the first signal
    OmegaConf.save(config, run_dir / "config.yaml")
    # With a 1-minute limit and signal_delay_s=15, USR2 comes 15-45 s after a start (slurmctld checks time
    # limits every 30 s); timeout_min < 10 makes submitit count each as a time limit: max_num_timeout=10.
    limits = ["cluster.train.timeout_min=1", "cluster.signal_delay_s=15", "cluster.max_num_timeout=10"]
    log: list[str] = []
    ex = _runner(run_dir, limits, log)
    unit = {"tiny-a": (str(run_dir), 0, "tiny-a")}
    done = lambda p: (run_dir / "iter_000" / "train" / p / "stats.json").exists()  # noqa: E731
    ex.run(StageJobs(0, "train", jobs.train_player, unit, is_done=done))

    stats = json.loads((run_dir / "iter_000" / "train" / "tiny-a" / "stats.json").read_text())
    assert stats["steps"] == 2400 and (stats["resumed_from"] or "").startswith("checkpoint-"), stats
    record = ex.state.stage_jobs(0, "train")["tiny-a"]
    assert record["attempts"] == 1, "requeued by Slurm and submitit, never resubmitted by the launcher"
    states = sacct_states(record["job_id"])
    assert "REQUEUED" in states, states
    # The last run can end with its work done just as the next time-limit signal arrives: Slurm then records
    # FAILED (srun: task killed by USR2) although submitit wrote a success result and logged completion.
    last_log = (run_dir / f"jobs/iter_000/train/{record['job_id']}_0_log.out").read_text()
    finished = last_log.rstrip().endswith("Exiting after successful completion")
    assert states[-1] == "COMPLETED" or (states[-1] == "FAILED" and finished), (states, last_log[-500:])
    assert events(run_dir, "preempted", "train"), log


def test_raising_job_stops_the_launcher_then_a_rerun_continues(
    cluster: SlurmCluster, reference: Path, tmp_path: Path
) -> None:
    run_dir = copy_run(reference, tmp_path / "run", "train", "evaluate")
    corrupt = run_dir / "iter_000" / "train" / "tiny-c" / "work" / "checkpoint-999"
    corrupt.mkdir(parents=True)  # the cause: a corrupt trainer checkpoint that tiny-c's job resumes from
    (corrupt / "trainer_state.json").write_text("{}")
    (corrupt / "adapter_model.safetensors").write_bytes(b"not a safetensors file")
    out = finish(launch(run_dir, FAST), code=1)

    failed = events(run_dir, "failed", "train")
    assert len(failed) == 1 and failed[0]["unit"] == "tiny-c", out[-3000:]
    log = Path(failed[0]["log"])
    assert f"error: train job {failed[0]['job_id']} failed: " in out and f"log: {log}" in out
    assert log.is_file() and "Traceback" in log.read_text()
    finished_before = {p.parent.name for p in run_dir.glob("iter_000/train/*/stats.json")}

    shutil.rmtree(corrupt.parent)  # fix the cause (the failed attempt adopted a copy of it), run again
    out = run_to_end(run_dir, FAST)
    second = events(run_dir, "submitted", "train")[1:]
    assert [e["units"] for e in second] == [["tiny-c"]], out[-3000:]
    assert {p.parent.name for p in run_dir.glob("iter_000/train/*/stats.json")} >= finished_before
    assert results(run_dir) == results(reference)


def test_detached_launcher_is_a_job_and_cancel_stops_everything(
    cluster: SlurmCluster, tmp_path: Path
) -> None:
    run_dir, release = tmp_path / "run", tmp_path / "release"
    since = time.strftime("%Y-%m-%dT%H:%M:%S", time.localtime(time.time() - 1))
    overrides = [*FAST, hold("generate", release)]  # never released before the cancel
    out = finish(launch(run_dir, overrides, "--detach"))
    launcher = json.loads((run_dir / "launcher_job.json").read_text())["job_id"]
    assert f"launcher submitted as Slurm job {launcher}" in out

    def generate_jobs() -> list[str]:
        found = state(run_dir)["jobs"] if (run_dir / "state.json").exists() else {}
        return [r["job_id"] for r in found.get("0", {}).get("generate", {}).values()]

    held: list[str] = []
    try:
        wait_until(lambda: len(generate_jobs()) == 2, 240, "the generate array to be recorded")
        held = generate_jobs()
        wait_until(lambda: live(launcher, *held), 60, f"sacct to list {launcher} and {held} as live")
        assert state(run_dir)["launcher_job"] == launcher
        assert "driven by" in finish(launch(run_dir, overrides, "--detach"), code=1)

        # The generate tasks are held until `release` exists and the launcher waits for them: all alive.
        cmd = [sys.executable, "-m", "sparta_hpc.cli", "cancel", str(run_dir)]
        cancel = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True)
        assert cancel.returncode == 0, cancel.stderr
        assert sorted(cancel.stdout.split(": ")[-1].strip().split(", ")) == sorted([launcher, *held])
        assert {j: ended_state(j) for j in held} == dict.fromkeys(held, "CANCELLED")

        # The launcher stops: its job ends (by the cancel file, or by scancel first) without finishing the run
        # and without resubmitting the cancelled tasks.
        wait_until(lambda: not live(launcher), 60, f"the launcher job {launcher} to end")
        ended = sacct_states(launcher)[-1]
        errors = run_dir / "jobs" / "launcher" / f"{launcher}_0_log.err"
        stopped = errors.exists() and "cancelled by `sparta-hpc cancel`" in errors.read_text()
        assert ended == "CANCELLED" or (ended == "FAILED" and stopped), (ended, errors)
        assert not state(run_dir)["done"]
        assert [a["attempts"] for a in state(run_dir)["jobs"]["0"]["generate"].values()] == [1, 1]
        assert not events(run_dir, "retried")
        submitted = submissions(run_dir, since)
        assert sorted(submitted) == ["generate", "launcher", "plan"], submitted
        arrays = {j.split("_")[0] for j in submitted["generate"]}  # a pending array may be one line
        assert arrays == {j.split("_")[0] for j in held}, submitted
    finally:
        subprocess.run(["scancel", launcher, *held], capture_output=True, check=False)
        release.touch()


def test_multi_rank_dpo_runs_one_slurm_task_per_rank(slurm_cluster: SlurmCluster, tmp_path: Path) -> None:
    """train.num_ranks=2, ZeRO-2: each player's DPO job is a 2-task Slurm job; the ranks split the pairs."""
    from safetensors.torch import load_file

    run_dir = tmp_path / "run"
    overrides = ["run.iterations=1", "plan.num_prompts=4", "generate.max_new_tokens=8", "train.max_length=64"]
    overrides += ["eval.every=0", "cluster.poll_interval_s=1", "train.num_ranks=2", "train.deepspeed=zero2"]
    finish(launch(run_dir, [*overrides, "cluster.train.tasks_per_node=2"]))
    for player in ("tiny-a", "tiny-b", "tiny-c", "tiny-d"):
        stats = json.loads((run_dir / f"iter_000/train/{player}/stats.json").read_text())
        assert (stats["num_ranks"], stats["num_pairs"], stats["steps"]) == (2, 4, 2)
        before = load_file(str(run_dir / f"models/initial/{player}/adapter_model.safetensors"))
        after = load_file(str(run_dir / f"iter_000/train/{player}/adapter/adapter_model.safetensors"))
        assert any(not before[k].equal(after[k]) for k in before), f"{player}: adapter unchanged"
    logs = sorted((run_dir / "jobs/iter_000/train").glob("*_log.out"))
    assert len(logs) == 8, [p.name for p in logs]  # 4 players x 2 ranks, one log per task


# ---------------------------------------------------------------- without accounting

SLURMDBD_PID = Path("/run/slurm/slurmdbd.pid")


def stop_slurmdbd() -> None:
    """Stop the test cluster's slurmdbd (by the pid in its pid file): sacct fails from now on."""
    pid = int(SLURMDBD_PID.read_text().strip())
    os.kill(pid, signal.SIGTERM)
    wait_until(lambda: not Path(f"/proc/{pid}").exists(), 30, "slurmdbd to stop")
    assert subprocess.run(["sacct", "-n", "-X", "-S", "now"], capture_output=True).returncode != 0


def start_slurmdbd() -> None:
    """Start the stopped daemon again (testcluster.sh start starts what is not running, and waits for it)."""
    script = ROOT / "slurm" / "testcluster.sh"
    proc = subprocess.run(["bash", str(script), "start"], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stdout + proc.stderr


def read_lines(proc: Any) -> list[str]:
    """The launcher's output lines as they come (a daemon thread appends them)."""
    lines: list[str] = []
    threading.Thread(target=lambda: lines.extend(proc.stdout), daemon=True).start()
    return lines


def test_slurmdbd_stopped_mid_run_the_run_ends_as_an_uninterrupted_one(
    cluster: SlurmCluster, reference: Path, tmp_path: Path
) -> None:
    """Accounting goes down while the generate tasks run, and one task is killed while it is down: the
    launcher follows its jobs with squeue and their result files, resubmits the killed task, and runs
    judge, train and evaluate without sacct; the records equal the reference's. slurmdbd restarts after."""
    if not SLURMDBD_PID.exists():
        pytest.skip("needs the test cluster's slurmdbd (slurm/testcluster.sh)")
    run_dir = copy_run(reference, tmp_path / "run", "generate", "judge", "train", "evaluate")
    release = tmp_path / "release"  # until it exists, the generate tasks are held RUNNING
    proc = launch(run_dir, [*FAST, hold("generate", release)])
    lines = read_lines(proc)

    def generate_jobs() -> list[str]:
        found = state(run_dir)["jobs"] if (run_dir / "state.json").exists() else {}
        return [r["job_id"] for r in found.get("0", {}).get("generate", {}).values()]

    try:
        wait_until(lambda: len(generate_jobs()) == 2 and live(*generate_jobs()), 240, "generate to run", proc)
        victim = generate_jobs()[1]
        stop_slurmdbd()
        subprocess.run(["scancel", victim], check=True)  # held: alive at the cancel, ends without a result
        wait_until(
            lambda: any("resubmitted (attempt 2)" in line for line in lines), 120, "a resubmission", proc
        )
        release.touch()
        proc.wait(timeout=600)
    finally:
        release.touch()
        if proc.poll() is None:
            proc.kill()
        start_slurmdbd()
    out = "".join(lines)
    assert proc.returncode == 0, out[-4000:]
    assert "jobs are followed with squeue" in out, out[-4000:]
    retried = events(run_dir, "retried")
    assert [(e["stage"], e["previous"], e["attempt"]) for e in retried] == [("generate", victim, 2)], out
    assert retried[0]["reason"] == f"job {victim} left Slurm's queue without writing a result"
    assert [e["stage"] for e in events(run_dir, "submitted")] == [
        "generate",
        "generate",
        "judge",
        "train",
        "evaluate",
    ]
    assert results(run_dir) == results(reference)
