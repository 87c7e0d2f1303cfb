"""The fault matrix's own checks can fail: ``compare`` and ``partial_damage`` see every kind of divergence."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

from tests.run import faults


def _run(root: Path, shard: list[str]) -> Path:
    """A tiny run directory: a state, a generate shard, a players file naming the root, an adapter."""
    (root / "iter_000/generate").mkdir(parents=True)
    (root / "iter_000/generate/shard_00000.jsonl").write_text("".join(line + "\n" for line in shard))
    (root / "iter_000/plan").mkdir(parents=True)
    players = {"a": {"base": f"{root}/models/tiny-base", "adapter": f"{root}/iter_000/train/a/adapter"}}
    (root / "iter_000/plan/players.json").write_text(json.dumps(players))
    adapter = root / "iter_000/train/a/adapter"
    adapter.mkdir(parents=True)
    (adapter / "adapter_config.json").write_text(json.dumps({"base_model_name_or_path": f"{root}/models"}))
    (adapter / "adapter_model.safetensors").write_bytes(b"weights")
    (root / "iter_000/train/a/stats.json").write_text(json.dumps({"seconds": 1.0}))
    (root / "state.json").write_text(json.dumps({"ratings": {"a": 1.0}, "done": True, "iteration": 1}))
    return root


RECORDS = ['{"id": 1}', '{"id": 2}', '{"id": 3}']


def test_runs_in_other_directories_with_other_timings_are_identical(tmp_path: Path) -> None:
    reference, run = _run(tmp_path / "ref", RECORDS), _run(tmp_path / "run", RECORDS)
    (run / "iter_000/train/a/stats.json").write_text(json.dumps({"seconds": 7.5}))
    assert not faults.compare(run, reference)
    assert faults.partial_damage(run, reference) == []


def test_lost_duplicated_changed_and_leftover_files_are_counted(tmp_path: Path) -> None:
    reference = _run(tmp_path / "ref", RECORDS)
    run = _run(tmp_path / "run", ['{"id": 1}', '{"id": 1}', '{"id": 3}'])  # 2 lost, 1 duplicated
    (run / "iter_000/train/a/adapter/adapter_model.safetensors").write_bytes(b"other weights")
    (run / "iter_000/generate/.shard_00000.jsonl.x1.tmp").write_text("half")
    (run / "state.json").write_text(json.dumps({"ratings": {"a": 2.0}, "done": True, "iteration": 1}))
    d = faults.compare(run, reference)
    assert (d.lost, d.duplicated) == (1 + 1, 1), d  # the shard's record 2, and the adapter
    assert d.files == [
        "iter_000/generate/.shard_00000.jsonl.x1.tmp (extra)",
        "iter_000/generate/shard_00000.jsonl",
        "iter_000/train/a/adapter",
        "state.json:ratings",
    ]
    assert faults.partial_damage(run, reference) == [
        "iter_000/generate/shard_00000.jsonl",
        "iter_000/train/a/adapter",
    ]


def test_a_chunk_must_be_its_slice_of_the_reference_unit(tmp_path: Path) -> None:
    lines = [json.dumps({"id": i}) for i in range(2 * faults.GEN_CHUNK)]
    reference, run = _run(tmp_path / "ref", lines), _run(tmp_path / "run", lines)
    (run / "iter_000/generate/shard_00000.jsonl").unlink()
    parts = run / "iter_000/generate/shard_00000.parts"
    parts.mkdir()
    (parts / "chunk_00000.jsonl").write_text("".join(line + "\n" for line in lines[: faults.GEN_CHUNK]))
    assert faults.partial_damage(run, reference) == []
    (parts / "chunk_00001.jsonl").write_text("".join(line + "\n" for line in lines[: faults.GEN_CHUNK]))
    assert faults.partial_damage(run, reference) == ["iter_000/generate/shard_00000.parts/chunk_00001.jsonl"]
    d = faults.compare(run, reference)
    assert d.lost == len(lines) and "iter_000/generate/shard_00000.jsonl" in d.files


def test_the_matrix_renders_every_case(tmp_path: Path) -> None:
    reference = _run(tmp_path / "ref", RECORDS)
    run = tmp_path / "run"
    shutil.copytree(reference, run)
    (run / "iter_000/plan/players.json").unlink()
    rows = [
        faults.Row(
            "killed launcher",
            "inline",
            "iter 0 plan: start",
            "resumed",
            faults.compare(reference, reference),
            3.0,
        ),
        faults.Row("corrupt output", "local", "x", "redone", faults.compare(run, reference), 5.0, "a | b"),
    ]
    text = faults.render(rows)
    assert (
        "| 2 | corrupt output | local | x | redone | 1 iter_000/plan/players.json | 1 | 0 | 5 | a / b |"
        in text
    )
    mode = "full" if faults.FULL else "ci"
    assert text.endswith(
        f"2 cases ({mode} matrix), 1 with divergences, 1 records lost, 0 duplicated, 8 s in all"
    )
