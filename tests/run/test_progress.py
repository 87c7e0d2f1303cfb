"""Per-stage progress lines and counting a stage's saved work from its chunk files."""

from __future__ import annotations

import io
from pathlib import Path

from sparta_hpc.config import load_config
from sparta_hpc.files import write_jsonl
from sparta_hpc.run import progress
from sparta_hpc.store.rundir import RunDir


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


class Tty(io.StringIO):
    def isatty(self) -> bool:
        return True


def test_progress_line() -> None:
    line = progress.progress_line("judge", 12, 48, 6.0, 2.0)
    assert line.startswith("judge    [######------------------] 12/48  25%  2/s  ETA 18.0s")
    assert progress.progress_line("train", 4, 4, 75.0, 0.05).endswith("in 1:15")
    assert "ETA ?" in progress.progress_line("plan", 0, 3, 1.0, None)
    assert progress.format_duration(3725) == "1:02:05"


def test_plain_stream_prints_periodic_lines_and_the_end() -> None:
    clock, out = Clock(), io.StringIO()
    bar = progress.Progress(stream=out, interval=10.0, clock=clock)
    for second, done in [(0, 0), (5, 10), (11, 20), (15, 30), (22, 40), (23, 40)]:
        clock.now = second
        bar.update("generate", done, 40)
    lines = out.getvalue().splitlines()
    assert [line.split("]")[1].split()[0] for line in lines] == ["0/40", "20/40", "40/40"]
    assert "20/40" in lines[1] and "1.82/s" in lines[1] and "ETA 11.0s" in lines[1]
    assert lines[2].endswith("in 22.0s")


def test_tty_rewrites_one_line() -> None:
    clock, out = Clock(), Tty()
    bar = progress.Progress(stream=out, clock=clock)
    for done in range(4):
        clock.now = done
        bar.update("judge", done, 3)
    text = out.getvalue()
    assert text.count("\r") == 4 and text.endswith("\n") and text.count("\n") == 1


def test_job_counts_line() -> None:
    line = progress.job_counts_line("judge", {"pending": 3, "running": 5, "done": 8})
    assert line == "judge    jobs: 3 pending, 5 running, 0 requeued, 8 done, 0 failed"


def test_stage_progress_counts_saved_chunks(tmp_path: Path) -> None:
    shape = ["generate.num_shards=2", "generate.chunk_size=4", "judge.chunk_size=5", "plan.num_prompts=5"]
    cfg = load_config(None, ["run.stage_layout=separate", *shape])
    run = RunDir(tmp_path)
    write_jsonl(run.matches(0), [{"n": i} for i in range(5)])  # shards of 3 and 2 matches
    assert progress.stage_progress(run, 0, "generate", cfg) == (0, 10)
    write_jsonl(run.shard_parts(0, "generate", 0) / "chunk_00000.jsonl", [{}])
    write_jsonl(run.shard_parts(0, "generate", 0) / "chunk_00001.jsonl", [{}])  # 2 chunks: capped at 6
    assert progress.stage_progress(run, 0, "generate", cfg) == (6, 10)
    write_jsonl(run.shard(0, "generate", 1), [{}])
    assert progress.stage_progress(run, 0, "generate", cfg) == (10, 10)
    # 4 players: 2 judges per match, 2 requests each; 1 shard of 5 matches = 20 requests
    write_jsonl(run.shard_parts(0, "judge", 0) / "chunk_00000.jsonl", [{}])
    assert progress.stage_progress(run, 0, "judge", cfg) == (5, 20)
    assert progress.stage_progress(run, 0, "train", cfg) == (0, 4)
    assert progress.stage_progress(run, 1, "generate", cfg) == (0, 0)
    # combat: the generate stage's tasks also judge, in generate's 2 shards (12 + 8 requests)
    combat = load_config(None, ["run.stage_layout=combat", *shape])
    assert progress.stage_progress(run, 0, "generate", combat) == (10 + 5, 10 + 20)
    assert progress.stage_progress(run, 0, "judge", combat) == (5, 20)
