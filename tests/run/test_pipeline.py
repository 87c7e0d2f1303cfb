"""The whole loop on tiny models, for real: determinism, SIGKILL inside a stage, corrupt outputs, no pairs."""

from __future__ import annotations

import json
import math
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import IO

import pytest

ROOT = Path(__file__).resolve().parents[2]
GEN_CHUNK, JUDGE_CHUNK, EVAL_CHUNK = 4, 8, 8
"""Requests (examples) per saved chunk: every shard and evaluation unit of MINI has several chunks."""
MINI = [
    "run.iterations=2",
    "plan.num_prompts=8",
    "generate.max_new_tokens=8",
    "train.max_length=64",
    f"generate.chunk_size={GEN_CHUNK}",
    f"judge.chunk_size={JUDGE_CHUNK}",
    f"eval.chunk_size={EVAL_CHUNK}",
    "eval.max_new_tokens=8",
]
RECORD_GLOBS = (
    "iter_*/plan/matches.jsonl",
    "iter_*/*/shard_*.jsonl",
    "iter_*/rate/*.json*",
    "iter_*/evaluate/*/*/*.jsonl",
)

pytestmark = pytest.mark.slow


def launch(
    run_dir: Path,
    *overrides: str,
    backend: str = "inline",
    pause_in: Path | None = None,
    stdout: IO[str] | int = subprocess.PIPE,
) -> subprocess.Popen[str]:
    """``launch.py`` with MINI; ``pause_in``: through PAUSING_LAUNCHER, pausing its writes in that folder."""
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "TOKENIZERS_PARALLELISM": "false"}
    cmd = [sys.executable]
    if pause_in is not None:
        cmd += ["-c", PAUSING_LAUNCHER]
        env |= {"SPARTA_TEST_PAUSE_IN": str(pause_in.resolve()) + os.sep, "SPARTA_TEST_PAUSE_S": str(PAUSE_S)}
    cmd += [str(ROOT / "launch.py"), "--cluster", backend, "--run-dir", str(run_dir), *MINI, *overrides]
    return subprocess.Popen(cmd, cwd=ROOT, env=env, stdout=stdout, stderr=subprocess.STDOUT, text=True)


def run_to_end(run_dir: Path, *overrides: str, backend: str = "inline") -> str:
    proc = launch(run_dir, *overrides, backend=backend)
    out, _ = proc.communicate(timeout=600)
    assert proc.returncode == 0, out[-3000:]
    return out


def records(run_dir: Path) -> dict[str, bytes]:
    # a kill can leave a hidden temp file (``.name.XXXX.tmp``) beside a record: it is never read
    files = sorted({p for g in RECORD_GLOBS for p in run_dir.glob(g) if not p.name.startswith(".")})
    return {str(p.relative_to(run_dir)): p.read_bytes() for p in files}


def state(run_dir: Path) -> dict:
    return json.loads((run_dir / "state.json").read_text())


@pytest.fixture(scope="module")
def reference(tmp_path_factory: pytest.TempPathFactory) -> Path:
    run_dir = tmp_path_factory.mktemp("reference") / "run"
    run_to_end(run_dir)
    return run_dir


def test_two_fresh_runs_are_byte_identical(reference: Path, tmp_path: Path) -> None:
    run_to_end(tmp_path / "again")
    first, second = records(reference), records(tmp_path / "again")
    # per iteration: matches, 1+1 shards, judged, ratings, preferences, report; then the evaluation units
    # (4 players x val, test) of the initial models and those after iterations 0 and 1
    assert len(first) == 2 * 7 + 3 * 4 * 2
    assert first == second
    assert state(reference)["ratings"] == state(tmp_path / "again")["ratings"]
    assert state(reference)["done"] is True


def test_training_changes_adapters_and_next_iteration_uses_them(reference: Path) -> None:
    from safetensors.torch import load_file

    players = json.loads((reference / "iter_001/plan/players.json").read_text())
    for name, spec in players.items():
        assert Path(spec["adapter"]) == reference / "iter_000/train" / name / "adapter"
        before = load_file(str(reference / "models/initial" / name / "adapter_model.safetensors"))
        after = load_file(str(Path(spec["adapter"]) / "adapter_model.safetensors"))
        assert before.keys() == after.keys()
        assert any(not before[k].equal(after[k]) for k in before), f"{name}: DPO left the adapter unchanged"


# --- SIGKILL inside a stage ---------------------------------------------------------------------------------
#
# The launcher runs the whole stage in its own process (``--cluster inline``). The test watches the run
# directory every POLL_S and SIGKILLs the launcher the moment the wanted partial state holds. After the kill,
# with the launcher dead and nothing changing anymore, it proves from the files that the kill landed inside
# the stage: a ``stage_start`` and no ``stage_end`` in events.jsonl, the stage not done in state.json, and the
# stage's outputs partly written (some chunks of a shard or evaluation unit but not all, some players trained
# but not all, ...). A run that ends before the condition was seen fails the test.
#
# Some stages are far shorter than a poll (plan and rate of iteration 1 take ~5 ms). So the killed launcher is
# started through PAUSING_LAUNCHER, a test-only wrapper (no hook in the package): an audit hook that sleeps
# PAUSE_S whenever the launcher opens a temp file in the stage folder under test (``sparta_hpc.files`` writes
# every record, chunk and stats file through a hidden ``.NAME.XXXX.tmp`` that it renames). Every state between
# two writes then lasts at least 2 x PAUSE_S, which a poll sees; the stage's results are unchanged. The run
# again after the kill is the plain ``launch.py`` command.
#
#   SPARTA_TEST_PAUSE_IN  folder (with a trailing separator) whose temp-file opens are paused
#   SPARTA_TEST_PAUSE_S   seconds of each pause

PAUSING_LAUNCHER = """
import os, runpy, sys, time

FOLDER, PAUSE = os.environ["SPARTA_TEST_PAUSE_IN"], float(os.environ["SPARTA_TEST_PAUSE_S"])


def pause_before_writes(event, args):
    if event == "open" and isinstance(args[0], (str, os.PathLike)):
        path = os.fspath(args[0])
        if isinstance(path, str) and path.startswith(FOLDER) and path.endswith(".tmp"):
            time.sleep(PAUSE)


sys.addaudithook(pause_before_writes)
sys.argv = sys.argv[1:]
runpy.run_path(sys.argv[0], run_name="__main__")
"""
PAUSE_S = 0.25
POLL_S = 0.02
KILL_T = 1
"""Every kill lands in iteration 1, so iteration 0's finished stages can be checked for being left alone."""
BETWEEN_K = 2
"""The between-chunks case kills generate once chunk BETWEEN_K - 1 is saved, before chunk BETWEEN_K is."""


@dataclass(frozen=True)
class Partial:
    """What of a stage was on disk at the kill."""

    what: str
    resumed: str | None = None
    """The line the run again must print: a chunked unit resuming after its saved chunks."""


Condition = Callable[[Path], Partial | None]


def _events(run_dir: Path) -> list[dict]:
    if not (run_dir / "events.jsonl").exists():
        return []
    out = []
    for line in (run_dir / "events.jsonl").read_text().splitlines():
        try:
            out.append(json.loads(line))
        except json.JSONDecodeError:  # a line being appended
            continue
    return out


def _inside(run_dir: Path, t: int, stage: str) -> bool:
    """Stage ``stage`` of iteration t has started and has not ended (events.jsonl and state.json agree)."""
    kinds = [e["kind"] for e in _events(run_dir) if (e.get("iteration"), e.get("stage")) == (t, stage)]
    done = (run_dir / "state.json").exists() and stage in state(run_dir)["stages"].get(str(t), {})
    return "stage_start" in kinds and "stage_end" not in kinds and not done


def _chunks(parts: Path) -> list[str]:
    return sorted(p.name for p in parts.glob("chunk_*.jsonl")) if parts.is_dir() else []


def _chunked(parts: Path, record: Path, total: int, exactly: int | None = None) -> Partial | None:
    """Some but not all of a unit's ``total`` chunks saved (chunk 0 to n-1), its record file not written."""
    names = _chunks(parts)
    n = len(names)
    if record.exists() or not 0 < n < total or names != [f"chunk_{i:05d}.jsonl" for i in range(n)]:
        return None
    if exactly is not None and n != exactly:
        return None
    what = f"{parts.name}: {n}/{total} chunks saved"
    return Partial(what, resumed=f"{parts.resolve()}: resuming after {n}/{total} saved chunks")


def _some_of(paths: list[Path]) -> Partial | None:
    written = [str(p) for p in paths if p.exists()]
    if not 0 < len(written) < len(paths):
        return None
    return Partial(f"{len(written)}/{len(paths)} written: {written}")


def _lines(path: Path) -> int:
    return len(path.read_text().splitlines())


def kill_condition(case: str, reference: Path) -> Condition:
    """The partial state of iteration KILL_T that the case kills in (sizes taken from the reference run)."""
    it = f"iter_{KILL_T:03d}"
    ref = reference / it
    gen_total = math.ceil(_lines(ref / "generate/shard_00000.jsonl") / GEN_CHUNK)
    judge_total = math.ceil(2 * _lines(ref / "judge/shard_00000.jsonl") / JUDGE_CHUNK)  # 2 requests a record
    eval_total = math.ceil(_lines(ref / f"evaluate/iter_{KILL_T}/tiny-a/val_00000.jsonl") / EVAL_CHUNK)
    players = sorted(p.parent.name for p in ref.glob("train/*/stats.json"))
    assert min(gen_total, judge_total, eval_total) >= 2 and gen_total > BETWEEN_K and len(players) >= 2

    def shard(stage: str, total: int, exactly: int | None = None) -> Condition:
        return lambda r: _chunked(
            r / it / stage / "shard_00000.parts", r / it / stage / "shard_00000.jsonl", total, exactly
        )

    def evaluate(r: Path) -> Partial | None:
        for parts in sorted((r / it / "evaluate").glob("*/*/*.parts")):
            partial = _chunked(parts, parts.with_suffix(".jsonl"), eval_total)
            if partial:
                return partial
        return None

    rate = ("judged.jsonl", "ratings.json", "preferences.jsonl", "report.json")
    return {
        "plan": lambda r: _some_of([r / it / "plan/matches.jsonl", r / it / "plan/players.json"]),
        "generate": shard("generate", gen_total),
        "judge": shard("judge", judge_total),
        "rate": lambda r: _some_of([r / it / "rate" / name for name in rate]),
        "train": lambda r: _some_of([r / it / "train" / p / "stats.json" for p in players]),
        "evaluate": evaluate,
        "generate-between-chunks": shard("generate", gen_total, exactly=BETWEEN_K),
    }[case]


def kill_when(proc: subprocess.Popen[str], ready: Callable[[], bool], log: Path) -> None:
    """SIGKILL ``proc`` as soon as ``ready()``; fail if it ends first or nothing happens for 300 s."""
    deadline = time.monotonic() + 300
    while not ready():
        if proc.poll() is not None:
            pytest.fail(f"the run ended (exit {proc.returncode}) before the kill condition:\n{_tail(log)}")
        if time.monotonic() > deadline:
            proc.kill()
            proc.wait(timeout=60)
            pytest.fail(f"the kill condition did not hold within 300 s:\n{_tail(log)}")
        time.sleep(POLL_S)
    proc.send_signal(signal.SIGKILL)
    proc.wait(timeout=60)
    assert proc.returncode == -signal.SIGKILL, f"the run ended by itself:\n{_tail(log)}"


def _tail(log: Path) -> str:
    return log.read_text(errors="replace")[-3000:]


def _done_files(run_dir: Path) -> dict[str, int]:
    """mtime of every output file of every stage the state records as done."""
    if not (run_dir / "state.json").exists():
        return {}
    out = {}
    for stages in state(run_dir)["stages"].values():
        for entry in stages.values():
            for rel in entry["outputs"]:
                path = run_dir / rel
                for f in [path] if path.is_file() else sorted(path.rglob("*")):
                    out[str(f)] = f.stat().st_mtime_ns
    return out


@pytest.mark.parametrize(
    "case", ["plan", "generate", "judge", "rate", "train", "evaluate", "generate-between-chunks"]
)
def test_sigkill_inside_a_stage_then_rerun_gives_identical_results(
    reference: Path, tmp_path: Path, case: str
) -> None:
    stage = case.split("-")[0]
    run_dir, log = tmp_path / "run", tmp_path / "killed.log"
    condition = kill_condition(case, reference)
    with open(log, "w") as out:
        proc = launch(run_dir, pause_in=run_dir / f"iter_{KILL_T:03d}" / stage, stdout=out)
        kill_when(proc, lambda: _inside(run_dir, KILL_T, stage) and condition(run_dir) is not None, log)

    # the launcher is dead: what is on disk now is what the kill left
    assert _inside(run_dir, KILL_T, stage), f"the kill did not land inside {stage}: {_events(run_dir)[-3:]}"
    partial = condition(run_dir)
    assert partial is not None, f"the kill did not land where {case} wants it"
    if case == "generate-between-chunks":
        # chunks 0 .. K-1 saved, chunk K not: they hold the first records of the uninterrupted run's shard
        parts = run_dir / f"iter_{KILL_T:03d}/generate/shard_00000.parts"
        saved = b"".join((parts / name).read_bytes() for name in _chunks(parts))
        shard = (reference / f"iter_{KILL_T:03d}/generate/shard_00000.jsonl").read_bytes()
        assert saved == b"".join(shard.splitlines(keepends=True)[: BETWEEN_K * GEN_CHUNK])
    finished_before = _done_files(run_dir)
    assert finished_before, "nothing was recorded before the kill"

    out = run_to_end(run_dir)
    if partial.resumed:
        assert partial.resumed in out, f"the run again did not resume after the saved chunks ({partial.what})"
    assert records(run_dir) == records(reference)
    assert state(run_dir)["ratings"] == state(reference)["ratings"]
    after = _done_files(run_dir)
    rewritten = [f for f, mtime in finished_before.items() if after.get(f) != mtime]
    assert not rewritten, f"finished stages were recomputed: {rewritten}"


def test_truncated_records_and_deleted_adapter_are_detected_and_redone(
    reference: Path, tmp_path: Path
) -> None:
    import shutil

    run_dir = tmp_path / "run"
    shutil.copytree(reference, run_dir)
    judged = run_dir / "iter_001/judge/shard_00000.jsonl"
    judged.write_bytes(judged.read_bytes()[:-40])
    out = run_to_end(run_dir)
    assert "[iter 1] judge: outputs are missing or changed" in out
    assert records(run_dir) == records(reference)

    (run_dir / "iter_000/train/tiny-b/adapter/adapter_model.safetensors").unlink()
    out = run_to_end(run_dir)
    assert "[iter 0] train: outputs are missing or changed" in out
    assert records(run_dir) == records(reference)
    assert state(run_dir)["ratings"] == state(reference)["ratings"]


def test_no_surviving_pair_skips_training_with_a_message(tmp_path: Path) -> None:
    # Decoded judging with 2 new tokens: tiny random models never write a parsable score, so every
    # judgment fails, the paper profile excludes them all, and no pair survives.
    out = run_to_end(
        tmp_path / "run",
        "run.iterations=1",
        "judge.method=generate",
        "judge.max_new_tokens=2",
        "run.tensorboard=true",
    )
    assert "no preference pair survived" in out
    report = json.loads((tmp_path / "run/iter_000/rate/report.json").read_text())
    assert report["num_pairs"] == 0
    assert sum(c["failed"] for c in report["judge_counts"].values()) == 8 * 2
    assert not (tmp_path / "run/iter_000/train").exists()
    assert state(tmp_path / "run")["done"] is True
    assert list((tmp_path / "run/tensorboard").glob("events.out.tfevents.*")), (
        "run.tensorboard=true wrote nothing"
    )


def test_status_json_describes_the_finished_run(reference: Path) -> None:
    proc = subprocess.run(
        [sys.executable, "-m", "sparta_hpc.cli", "status", str(reference), "--json"],
        cwd=ROOT,
        capture_output=True,
        text=True,
    )
    assert proc.returncode == 0, proc.stderr
    status = json.loads(proc.stdout)
    assert status["run_dir"] == str(reference.resolve())
    assert (status["done"], status["iteration"], status["iterations_total"]) == (True, 2, 2)
    assert {(r["iteration"], r["stage"]) for r in status["stages"] if r["state"] == "done"} >= {
        (t, s) for t in range(2) for s in ("plan", "generate", "judge", "rate", "train")
    }
    final = json.loads((reference / "iter_001/rate/ratings.json").read_text())
    expected = {p: {"rating": r["rating"], "deviation": r["deviation"]} for p, r in final.items()}
    assert status["ratings"] == expected


def test_rate_command_reproduces_the_pipelines_ratings_and_pairs(reference: Path, tmp_path: Path) -> None:
    cmd = [
        sys.executable,
        "-m",
        "sparta_hpc.cli",
        "rate",
        "--matches",
        str(reference / "iter_001/rate/judged.jsonl"),
        "--ratings",
        str(reference / "iter_000/rate/ratings.json"),
        "--iteration",
        "1",
        "--out",
        str(tmp_path / "out"),
    ]
    proc = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr
    ours = json.loads((tmp_path / "out/ratings.json").read_text())
    assert ours == json.loads((reference / "iter_001/rate/ratings.json").read_text())
    pairs = [json.loads(line) for line in (tmp_path / "out/preferences.jsonl").read_text().splitlines()]
    assert pairs == [
        json.loads(line) for line in (reference / "iter_001/rate/preferences.jsonl").read_text().splitlines()
    ]


def test_local_subprocess_backend_matches_inline_and_shows_progress(reference: Path, tmp_path: Path) -> None:
    """The demo's backend: every job in its own submitit subprocess, a progress line per stage."""
    import re

    out = run_to_end(tmp_path / "run", backend="local")
    assert records(tmp_path / "run") == records(reference)
    for stage in ("generate", "judge", "train"):
        for t in (0, 1):
            assert re.search(rf"\[iter {t}\] {stage} +\[#+\] (\d+)/\1 100%", out), (
                f"no progress for {stage} {t}"
            )


def test_tensorboard_scalars_match_the_records(reference: Path, tmp_path: Path) -> None:
    import shutil

    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    from sparta_hpc.run import scalars
    from sparta_hpc.store.rundir import RunDir
    from sparta_hpc.store.state import load_state

    shutil.copytree(reference, tmp_path / "run")
    run = RunDir(tmp_path / "run")
    state = load_state(run)
    assert state is not None
    for t in range(2):
        scalars.write_iteration(run, state, t)
    events = EventAccumulator(str(run.tensorboard_dir))
    events.Reload()
    for t in range(2):
        ratings = json.loads((reference / f"iter_{t:03d}/rate/ratings.json").read_text())
        for player, r in ratings.items():
            logged = {e.step: e.value for e in events.Scalars(f"rating/{player}")}
            assert logged[t + 1] == pytest.approx(r["rating"], rel=1e-6)
            loss = json.loads((reference / f"iter_{t:03d}/train/{player}/stats.json").read_text())[
                "train_loss"
            ]
            assert {e.step: e.value for e in events.Scalars(f"dpo_loss/{player}")}[t + 1] == pytest.approx(
                loss
            )
    assert "judge_parse_rate/tiny-a" in events.Tags()["scalars"]
