"""The whole loop on tiny models, for real: determinism, training, no pairs, status, the local backend.

Faults (SIGKILL inside every stage, corrupt outputs, full disks, ...) are the fault matrix: test_faults.py."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from tests.run import faults

ROOT = faults.ROOT
MINI = faults.MINI
RECORD_GLOBS = (
    "iter_*/plan/matches.jsonl",
    "iter_*/*/shard_*.jsonl",
    "iter_*/rate/*.json*",
    "iter_*/evaluate/*/*/*.jsonl",
)

pytestmark = pytest.mark.slow
launch, run_to_end, state = faults.launch, faults.run_to_end, faults.state


def records(run_dir: Path) -> dict[str, bytes]:
    # a kill can leave a hidden temp file (``.name.XXXX.tmp``) beside a record: it is never read
    files = sorted({p for g in RECORD_GLOBS for p in run_dir.glob(g) if not p.name.startswith(".")})
    return {str(p.relative_to(run_dir)): p.read_bytes() for p in files}


@pytest.fixture(scope="module")
def reference(mini_reference: Path) -> Path:
    return mini_reference


def test_two_fresh_runs_are_byte_identical(reference: Path, tmp_path: Path) -> None:
    run_to_end(tmp_path / "again")
    first, second = records(reference), records(tmp_path / "again")
    # per iteration: matches, 1+1 shards, judged, ratings, preferences, report; then the evaluation units
    # (4 players x val, test) of the initial models and those after iterations 0 and 1
    assert len(first) == 2 * 7 + 3 * 4 * 2
    assert first == second
    assert not faults.compare(tmp_path / "again", reference)  # and so do adapters, every record, the ratings
    assert state(reference)["ratings"] == state(tmp_path / "again")["ratings"]
    assert state(reference)["done"] is True


def test_training_changes_adapters_and_next_iteration_uses_them(reference: Path) -> None:
    from safetensors.torch import load_file

    players = json.loads((reference / "iter_001/plan/players.json").read_text())
    for name, spec in players.items():
        assert spec == {"base": "models/tiny-base", "adapter": f"iter_000/train/{name}/adapter"}
        before = load_file(str(reference / "models/initial" / name / "adapter_model.safetensors"))
        after = load_file(str(reference / spec["adapter"] / "adapter_model.safetensors"))
        assert before.keys() == after.keys()
        assert any(not before[k].equal(after[k]) for k in before), f"{name}: DPO left the adapter unchanged"


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
