"""The combat layout (``run.stage_layout=combat``): one task per shard generates and judges with one engine.

Its records must be byte-identical to the separate layout's (the MINI reference runs ``separate``), and a
launcher killed while a combat task judges must resume after the last saved judge chunk, without generating
again. Evaluation rides on the combat tasks: the records of the models after iteration t lie in
``iter_<t+1>/evaluate/`` instead of ``iter_<t>/evaluate/``, with the same content. On Slurm:
``test_slurm_pipeline.py::test_combat_layout_equals_separate_without_judge_jobs``.
"""

from __future__ import annotations

import re
import time
from pathlib import Path

import pytest

from tests.run import faults

EVAL_RECORD = re.compile(r"iter_\d{3}/evaluate/(?!models\.json)")

pytestmark = pytest.mark.slow
COMBAT = "run.stage_layout=combat"


def _judging(run_dir: Path, chunks: int) -> bool:
    """Iteration 0's combat task has published its generations and saved exactly ``chunks`` judge chunks."""
    it = run_dir / "iter_000"
    parts = it / "judge" / "shard_00000.parts"
    saved = sorted(p.name for p in parts.glob("chunk_*.jsonl")) if parts.is_dir() else []
    return (
        faults.inside(run_dir, 0, "generate")
        and (it / "generate" / "shard_00000.jsonl").exists()
        and not (it / "judge" / "shard_00000.jsonl").exists()
        and saved == [f"chunk_{i:05d}.jsonl" for i in range(chunks)]
    )


def by_unit(run_dir: Path, other: Path) -> dict[str, bytes]:
    """``faults.results`` with evaluation records keyed by unit (label/player/split), not by the iteration
    whose stage wrote them, and without the evaluate stages' models.json (which lists the labels)."""
    found = faults.results(run_dir, faults._roots(run_dir, other))
    return {EVAL_RECORD.sub("evaluate/", k): v for k, v in found.items() if not k.endswith("models.json")}


def _evaluating(run_dir: Path) -> Path | None:
    """The first evaluation unit of iteration 0's combat task with one chunk saved and no record file."""
    it = run_dir / "iter_000"
    if not faults.inside(run_dir, 0, "generate") or not (it / "judge" / "shard_00000.jsonl").exists():
        return None
    for parts in sorted(it.glob("evaluate/initial/*/*.parts")):
        saved = sorted(p.name for p in parts.glob("chunk_*.jsonl"))
        if saved == ["chunk_00000.jsonl"] and not parts.with_suffix(".jsonl").exists():
            return parts
    return None


def test_combat_killed_while_judging_then_evaluating_resumes_with_the_separate_records(
    mini_reference: Path, tmp_path: Path
) -> None:
    run_dir = tmp_path / "run"
    log = tmp_path / "killed.log"
    with open(log, "w") as out:
        proc = faults.launch(run_dir, COMBAT, pause_in=run_dir / "iter_000" / "judge", stdout=out)
        faults.kill_when(proc, lambda: _judging(run_dir, 1), log)
    generations = run_dir / "iter_000/generate/shard_00000.jsonl"
    generated_at = generations.stat().st_mtime_ns
    assert not (run_dir / "iter_000/judge/shard_00000.jsonl").exists()
    # again, now killed while the same combat task evaluates the initial models (one chunk of a unit saved)
    with open(log, "w") as out:
        proc = faults.launch(run_dir, COMBAT, pause_in=run_dir / "iter_000" / "evaluate", stdout=out)
        faults.kill_when(proc, lambda: _evaluating(run_dir) is not None, log)
    parts = _evaluating(run_dir)
    assert parts is not None
    with open(log) as f:
        resumed = f.read()
    total = 8 * 2 * 2 // faults.JUDGE_CHUNK  # 8 matches x 2 judges x 2 sides, in chunks of JUDGE_CHUNK
    assert f"judge/shard_00000.parts: resuming after 1/{total} saved chunks" in resumed, resumed[-3000:]
    judged_at = (run_dir / "iter_000/judge/shard_00000.jsonl").stat().st_mtime_ns

    start = time.monotonic()
    code, out = faults.rerun(run_dir, COMBAT)
    assert code == 0, out[-3000:]
    # 16 examples per split, in chunks of EVAL_CHUNK = 8
    assert f"{parts.resolve()}: resuming after 1/2 saved chunks" in out, out[-3000:]
    assert generations.stat().st_mtime_ns == generated_at, "the combat task generated again"
    assert (run_dir / "iter_000/judge/shard_00000.jsonl").stat().st_mtime_ns == judged_at, "judged again"
    assert "layout combat" in out
    ours, theirs = by_unit(run_dir, mini_reference), by_unit(mini_reference, run_dir)
    assert ours.keys() == theirs.keys()
    assert [k for k in ours if ours[k] != theirs[k]] == []
    assert faults.state(run_dir)["ratings"] == faults.state(mini_reference)["ratings"]
    assert sorted(p.parent.name for p in run_dir.glob("iter_001/evaluate/*/tiny-a")) == ["iter_0", "iter_1"]
    # the judge stage ran no task of its own: its shard came from the combat task
    assert faults.state(run_dir)["stages"]["0"]["judge"]["info"]["new"] == 0
    print(f"\ncombat resume after kills while judging and evaluating: {time.monotonic() - start:.1f}s")
