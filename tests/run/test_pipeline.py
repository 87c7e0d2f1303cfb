"""The whole loop on tiny models, for real: determinism, SIGKILL in every stage, corrupt outputs, no pairs."""

from __future__ import annotations

import json
import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
MINI = ["run.iterations=2", "plan.num_prompts=8", "generate.max_new_tokens=8", "train.max_length=64"]
RECORD_GLOBS = ("iter_*/plan/matches.jsonl", "iter_*/*/shard_*.jsonl", "iter_*/rate/*.json*")

pytestmark = pytest.mark.slow


def launch(run_dir: Path, *overrides: str, backend: str = "inline") -> subprocess.Popen[str]:
    cmd = [
        sys.executable,
        str(ROOT / "launch.py"),
        "--cluster",
        backend,
        "--run-dir",
        str(run_dir),
        *MINI,
        *overrides,
    ]
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "TOKENIZERS_PARALLELISM": "false"}
    return subprocess.Popen(
        cmd, cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True
    )


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
    assert len(first) == 2 * 7  # per iteration: matches, 1+1 shards, judged, ratings, preferences, report
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


def _stage_started(run_dir: Path, t: int, stage: str) -> bool:
    return (run_dir / f"iter_{t:03d}" / stage).exists()


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


@pytest.mark.parametrize("stage", ["plan", "generate", "judge", "rate", "train"])
def test_sigkill_during_a_stage_then_rerun_gives_identical_results(
    reference: Path, tmp_path: Path, stage: str
) -> None:
    run_dir = tmp_path / "run"
    rng = random.Random(stage)
    proc = launch(run_dir)
    deadline = time.monotonic() + 300
    while not _stage_started(run_dir, 1, stage):
        assert proc.poll() is None, "the run ended before the stage to kill started"
        assert time.monotonic() < deadline
        time.sleep(0.05)
    time.sleep(rng.uniform(0.0, 1.5))
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    finished_before = _done_files(run_dir)
    assert finished_before, "nothing was recorded before the kill"
    run_to_end(run_dir)
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
