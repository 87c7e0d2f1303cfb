"""Two attempts at the same unit (a job and its orphan, or a resubmission of a job the launcher lost) never
both publish: the first publishes whole, the other keeps what it finds; the result equals a single attempt."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest

from sparta_hpc.engines.base import Request
from sparta_hpc.files import publish_text, remove_temporaries, sha256_path, staging_dir
from sparta_hpc.jobs.common import run_chunks
from sparta_hpc.training.checkpoints import adopt_checkpoint, last_checkpoint, published_stats

ROOT = Path(__file__).resolve().parents[2]
MINI = ["run.iterations=1", "plan.num_prompts=6", "generate.max_new_tokens=8", "train.max_length=64"]


def test_publish_text_publishes_once_and_keeps_the_first(tmp_path: Path) -> None:
    out = tmp_path / "shard.jsonl"
    assert publish_text(out, "first\n") is True
    assert publish_text(out, "second\n") is False
    assert out.read_text() == "first\n"
    assert [p.name for p in tmp_path.iterdir()] == ["shard.jsonl"]  # no temporary left


def test_a_second_directory_publish_keeps_the_first(tmp_path: Path) -> None:
    out = tmp_path / "adapter"
    for content in ("first", "second"):
        with staging_dir(out) as tmp:
            (tmp / "weights").write_text(content)
    assert (out / "weights").read_text() == "first"
    assert not remove_temporaries(tmp_path)


def test_leftover_temporaries_are_removed(tmp_path: Path) -> None:
    (tmp_path / "shard_00000.parts").mkdir()
    (tmp_path / "shard_00000.parts" / ".chunk_00001.jsonl.ab12.tmp").write_text("half")
    (tmp_path / ".adapter.tmp-x1").mkdir()
    (tmp_path / "shard_00000.jsonl").write_text("kept\n")
    removed = remove_temporaries(tmp_path)
    assert len(removed) == 2
    assert sorted(p.name for p in tmp_path.rglob("*")) == ["shard_00000.jsonl", "shard_00000.parts"]


def _checkpoint(folder: Path, step: int, complete: bool = True) -> Path:
    path = folder / f"checkpoint-{step}"
    path.mkdir(parents=True)
    (path / "adapter_model.safetensors").write_text(f"step {step}")
    if complete:
        (path / "trainer_state.json").write_text("{}")
    return path


def test_a_checkpoint_whose_trainer_state_does_not_parse_is_not_complete(tmp_path: Path) -> None:
    work = tmp_path / "work"
    _checkpoint(work / "101", 4)
    half = _checkpoint(work / "101", 8)  # killed, or the disk filled, while the Trainer wrote its last file
    (half / "trainer_state.json").write_text('{"global_step": 8, "log_hi')
    assert last_checkpoint(work / "101") == work / "101" / "checkpoint-4"
    assert adopt_checkpoint(work / "102", work) == work / "102" / "checkpoint-4"
    (half / "trainer_state.json").write_text("")
    assert last_checkpoint(work / "101") == work / "101" / "checkpoint-4"


def test_a_new_attempt_adopts_the_newest_complete_checkpoint_of_the_others(tmp_path: Path) -> None:
    work = tmp_path / "work"
    _checkpoint(work / "101", 2)
    _checkpoint(work / "102", 4)
    _checkpoint(work / "102", 6, complete=False)  # being written: never adopted
    mine = work / "103"
    adopted = adopt_checkpoint(mine, work)
    assert adopted == mine / "checkpoint-4" and last_checkpoint(mine) == adopted
    assert (adopted / "adapter_model.safetensors").read_text() == "step 4"
    assert adopt_checkpoint(mine, work) is None  # a requeued attempt keeps its own


def test_a_pre_attempt_checkpoint_is_adopted_and_stats_come_from_the_publisher(tmp_path: Path) -> None:
    work = tmp_path / "work"
    _checkpoint(work, 3)  # written before attempts had folders
    assert adopt_checkpoint(work / "pid-9", work) == work / "pid-9" / "checkpoint-3"
    (work / "101").mkdir()
    (work / "101" / "dpo_stats.json").write_text(json.dumps({"steps": 3}))
    assert published_stats(work / "pid-9") == {"steps": 3}
    assert published_stats(tmp_path / "other" / "x") == {"published_by_another_attempt": True}


# ---------------------------------------------------------------- saved chunks


def _chunked(tmp_path: Path, saved: dict[int, str]) -> tuple[Path, Path, list[int]]:
    """A unit of 10 requests in chunks of 4 (4, 4, 2 records), with ``saved`` chunk files already there."""
    parts, out = tmp_path / "shard_00000.parts", tmp_path / "shard_00000.jsonl"
    parts.mkdir()
    for i, text in saved.items():
        (parts / f"chunk_{i:05d}.jsonl").write_text(text)
    return parts, out, []


def _compute(calls: list[int]) -> Callable[[list[Request]], list[dict[str, object]]]:
    def compute(chunk: list[Request]) -> list[dict[str, object]]:
        calls.append(int(chunk[0].request_id))
        return [{"id": r.request_id, "x": int(r.request_id) * 10} for r in chunk]

    return compute


REQUESTS = [Request(request_id=str(i), model="m", prompt="p", seed=0) for i in range(10)]
WHOLE = [{"id": str(i), "x": i * 10} for i in range(10)]


def _lines(records: list[dict[str, object]]) -> str:
    return "".join(json.dumps(r, sort_keys=True) + "\n" for r in records)


@pytest.mark.parametrize(
    "corrupt",
    [
        _lines(WHOLE[4:8])[:-9],  # cut mid-line
        _lines(WHOLE[4:7]),  # lost a whole line: valid JSON, one record short
        "\0" * 80,  # zero-filled by a file system that lost its data
        "",  # emptied
        "[1]\n[2]\n[3]\n[4]\n",  # JSON, but no records
    ],
    ids=["cut", "short", "zeros", "empty", "not-objects"],
)
def test_a_corrupt_saved_chunk_is_computed_again(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], corrupt: str
) -> None:
    parts, out, calls = _chunked(tmp_path, {0: _lines(WHOLE[:4]), 1: corrupt})
    assert run_chunks(parts, out, REQUESTS, 4, _compute(calls)) == WHOLE
    assert calls == [4, 8], "chunk 0 was kept, chunk 1 computed again, chunk 2 computed"
    assert (parts / "chunk_00001.jsonl").read_text() == _lines(WHOLE[4:8])
    said = capsys.readouterr().out
    assert "resuming after 2/3 saved chunks" in said and f"{parts / 'chunk_00001.jsonl'}: corrupt (" in said


def test_whole_saved_chunks_are_kept(tmp_path: Path) -> None:
    parts, out, calls = _chunked(tmp_path, {0: _lines(WHOLE[:4]), 1: _lines(WHOLE[4:8])})
    assert run_chunks(parts, out, REQUESTS, 4, _compute(calls)) == WHOLE
    assert calls == [8]


# ---------------------------------------------------------------- real jobs, two processes at once

ATTEMPT = """
import json, sys
from sparta_hpc import jobs
entry, run_root, unit = sys.argv[1:]
print(json.dumps(getattr(jobs, entry)(run_root, 0, int(unit) if unit.isdigit() else unit)))
"""


@pytest.fixture(scope="module")
def reference(tmp_path_factory: pytest.TempPathFactory) -> Path:
    run_dir = tmp_path_factory.mktemp("attempts") / "run"
    cmd = [sys.executable, str(ROOT / "launch.py"), "--cluster", "inline", "--run-dir", str(run_dir), *MINI]
    proc = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, env=_env(), timeout=600)
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-2000:]
    return run_dir


def _env() -> dict[str, str]:
    return {**os.environ, "HF_HUB_OFFLINE": "1", "TOKENIZERS_PARALLELISM": "false"}


def _two_attempts(run_dir: Path, entry: str, unit: str) -> list[int | dict[str, object]]:
    procs = [
        subprocess.Popen(
            [sys.executable, "-c", ATTEMPT, entry, str(run_dir), unit],
            cwd=ROOT,
            env=_env(),
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )  # fmt: skip
        for _ in range(2)
    ]
    outs = [p.communicate(timeout=600) for p in procs]
    assert all(p.returncode == 0 for p in procs), [err[-2000:] for _, err in outs]
    return [json.loads(out.strip().splitlines()[-1]) for out, _ in outs]


@pytest.mark.slow
@pytest.mark.parametrize("stage", ["generate", "judge"])
def test_two_attempts_at_a_shard_publish_it_once(reference: Path, tmp_path: Path, stage: str) -> None:
    run_dir = tmp_path / "run"
    shutil.copytree(reference, run_dir)
    shard = Path(f"iter_000/{stage}/shard_00000.jsonl")
    (run_dir / shard).unlink()
    results = _two_attempts(run_dir, f"{stage}_shard", "0")
    assert sorted(results, key=str)[0] == -1 and sorted(results, key=str)[1] > 0, results  # type: ignore[operator]
    assert (run_dir / shard).read_bytes() == (reference / shard).read_bytes()
    assert not (run_dir / shard).with_suffix(".parts").exists()
    assert not remove_temporaries(run_dir / shard.parent)


@pytest.mark.slow
def test_two_attempts_at_a_players_dpo_publish_one_adapter(reference: Path, tmp_path: Path) -> None:
    run_dir = tmp_path / "run"
    shutil.copytree(reference, run_dir)
    player = Path("iter_000/train/tiny-a")
    shutil.rmtree(run_dir / player)
    stats = _two_attempts(run_dir, "train_player", "tiny-a")
    assert all(isinstance(s, dict) and s.get("steps") for s in stats), stats
    assert sha256_path(run_dir / player / "adapter") == sha256_path(reference / player / "adapter")
    assert not remove_temporaries(run_dir / player)
