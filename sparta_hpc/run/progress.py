"""Progress of a running stage: a bar rewritten in place on a terminal, plain periodic lines otherwise.

The executor's wait loop calls ``update(stage, done, total)`` on every poll; ``stage_progress`` counts what a
generate, judge or train stage has finished from the files it has saved so far (no job needs to report).
"""

from __future__ import annotations

import sys
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TextIO

from sparta_hpc.config import SpartaConfig
from sparta_hpc.jobs.common import engine_chunk
from sparta_hpc.store.events import format_duration
from sparta_hpc.store.rundir import RunDir

JOB_STATES = ("pending", "running", "requeued", "done", "failed")
"""The job states counted while waiting for Slurm (``job_counts_line``)."""
BAR_WIDTH = 24


def progress_line(stage: str, done: int, total: int, elapsed: float, rate: float | None) -> str:
    """``generate [######------] 12/48  25%  3.1/s  ETA 0:12``."""
    frac = done / total if total > 0 else 1.0
    filled = int(round(frac * BAR_WIDTH))
    bar = "#" * filled + "-" * (BAR_WIDTH - filled)
    speed = f"{rate:.3g}/s" if rate else "-/s"
    if done >= total:
        eta = f"in {format_duration(elapsed)}"
    elif rate:
        eta = f"ETA {format_duration((total - done) / rate)}"
    else:
        eta = "ETA ?"
    return f"{stage:<8} [{bar}] {done}/{total} {frac:>4.0%}  {speed}  {eta}"


@dataclass
class _Track:
    start: float
    first_done: int
    last_print: float = -1.0e9
    finished: bool = False


@dataclass
class Progress:
    """Prints the progress of stages to ``stream``: ``\\r``-rewritten on a TTY, else every ``interval`` s."""

    stream: TextIO = field(default_factory=lambda: sys.stderr)
    interval: float = 30.0
    clock: Callable[[], float] = time.monotonic
    _tracks: dict[str, _Track] = field(default_factory=dict)

    def update(self, stage: str, done: int, total: int) -> None:
        """Report that ``done`` of ``total`` items of ``stage`` are finished."""
        now = self.clock()
        track = self._tracks.get(stage)
        if track is None or done < track.first_done:
            track = self._tracks[stage] = _Track(start=now, first_done=done)
        if track.finished:
            return
        elapsed = now - track.start
        rate = (done - track.first_done) / elapsed if elapsed > 0 and done > track.first_done else None
        line = progress_line(stage, done, total, elapsed, rate)
        finished = done >= total
        if self._tty():
            self.stream.write("\r" + line + ("\n" if finished else ""))
        elif finished or now - track.last_print >= self.interval:
            self.stream.write(line + "\n")
        else:
            return
        self.stream.flush()
        track.last_print = now
        track.finished = finished

    def _tty(self) -> bool:
        isatty = getattr(self.stream, "isatty", None)
        return bool(isatty and isatty())


_DEFAULT = Progress()


def update(stage: str, done: int, total: int) -> None:
    """``Progress.update`` on a shared instance writing to stderr (what the executor calls)."""
    _DEFAULT.update(stage, done, total)


def job_counts_line(stage: str, counts: Mapping[str, int]) -> str:
    """``judge    jobs: 3 pending, 5 running, 0 requeued, 8 done, 0 failed`` (Slurm mode, while waiting)."""
    parts = ", ".join(f"{counts.get(s, 0)} {s}" for s in JOB_STATES)
    return f"{stage:<8} jobs: {parts}"


# ---------------------------------------------------------------- counting saved work


def _num_lines(path: Path) -> int:
    with open(path, encoding="utf-8") as f:
        return sum(1 for line in f if line.strip())


def _shard_sizes(num_items: int, num_shards: int) -> list[int]:
    size, extra = divmod(num_items, num_shards)
    return [size + (1 if s < extra else 0) for s in range(num_shards)]


def _chunked(run: RunDir, t: int, stage: str, per_match: int, num_shards: int, chunk: int) -> tuple[int, int]:
    if not run.matches(t).exists():
        return 0, 0
    sizes = [n * per_match for n in _shard_sizes(_num_lines(run.matches(t)), num_shards)]
    done = 0
    for shard, size in enumerate(sizes):
        if run.shard(t, stage, shard).exists():
            done += size
        elif run.shard_parts(t, stage, shard).is_dir():
            saved = len(list(run.shard_parts(t, stage, shard).glob("chunk_*.jsonl")))
            done += min(size, saved * chunk)
    return done, sum(sizes)


def stage_progress(run: RunDir, t: int, stage: str, cfg: SpartaConfig) -> tuple[int, int]:
    """``(done, total)`` requests (generate, judge) or players (train) of iteration t saved on disk so far.

    Generation has 2 requests per match, judging 2 per match and judge (m - 2 judges); a self match
    (``run.mode=self_rewarding``) has ``selfreward.num_samples`` of each. Other stages run in
    the launcher or have no countable parts: ``(0, 0)``.
    """
    samples = cfg.selfreward.num_samples if cfg.run.mode == "self_rewarding" else 0
    g, j = cfg.generate, cfg.judge
    per_match = samples or 2 * (len(cfg.player_names) - 2)
    generated = _chunked(run, t, "generate", samples or 2, g.num_shards, engine_chunk(cfg, g.chunk_size))
    judged = _chunked(run, t, "judge", per_match, cfg.judge_shards, engine_chunk(cfg, j.chunk_size))
    if stage == "generate" and cfg.combat:  # combat tasks generate and judge: both count
        return generated[0] + judged[0], generated[1] + judged[1]
    if stage == "generate":
        return generated
    if stage == "judge":
        return judged
    if stage == "train":
        players = cfg.player_names
        return sum(run.train_stats(t, p).exists() for p in players), len(players)
    return 0, 0
