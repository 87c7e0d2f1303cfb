"""The run state: one small schema-versioned JSON file, written atomically (the launcher lock: ``lock.py``).

The state says which stage of which iteration is done (with checksums of its outputs), the ratings after the
last committed iteration, their history, and every player's current adapter. Records themselves live in the
stage folders; the state only points at them, so a lost or altered record is noticed and redone.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from sparta_hpc.errors import StateError
from sparta_hpc.files import read_json, sha256_path, write_json
from sparta_hpc.method.types import PlayerRating, RatingTable
from sparta_hpc.store.lock import LauncherLock as LauncherLock  # where the launcher takes it from
from sparta_hpc.store.lock import check_lock
from sparta_hpc.store.rundir import STAGES, RunDir

SCHEMA_VERSION = 1


@dataclass
class RunState:
    """What is done and where it is. ``iteration`` counts committed iterations (the next one to run)."""

    config_hash: str
    iterations_total: int
    iteration: int = 0
    ratings: dict[str, dict[str, Any]] = field(default_factory=dict)
    rating_history: list[dict[str, float]] = field(default_factory=list)
    adapters: dict[str, str | None] = field(default_factory=dict)
    stages: dict[str, dict[str, dict[str, Any]]] = field(default_factory=dict)
    jobs: dict[str, dict[str, dict[str, dict[str, Any]]]] = field(default_factory=dict)
    """``{iteration: {stage: {unit: {"job_id", "attempts"}}}}``: the latest job of every unit submitted."""
    launcher_job: str | None = None
    """Slurm job id of the launcher when it runs as a job (``--detach``)."""

    @property
    def done(self) -> bool:
        return self.iteration >= self.iterations_total

    def rating_table(self) -> RatingTable:
        return {name: PlayerRating.from_dict(r) for name, r in sorted(self.ratings.items())}

    def leaderboard(self) -> list[dict[str, Any]]:
        """The players best first (equal ratings by name): ``rank``, ``player``, ``rating``, ``deviation`` and
        ``change`` since the previous iteration (None without one)."""
        before = self.rating_history[-2] if len(self.rating_history) >= 2 else {}
        ranked = sorted(self.ratings.items(), key=lambda kv: (-kv[1]["rating"], kv[0]))
        return [
            {
                "rank": i,
                "player": p,
                "rating": r["rating"],
                "deviation": r["deviation"],
                "change": r["rating"] - before[p] if p in before else None,
            }
            for i, (p, r) in enumerate(ranked, start=1)
        ]

    def stage_entry(self, t: int, stage: str) -> dict[str, Any] | None:
        return self.stages.get(str(t), {}).get(stage)

    def is_done(self, t: int, stage: str) -> bool:
        return self.stage_entry(t, stage) is not None

    def mark_done(self, t: int, stage: str, outputs: dict[str, str | None], info: dict[str, Any]) -> None:
        self.stages.setdefault(str(t), {})[stage] = {"outputs": outputs, "info": info}

    def stage_jobs(self, t: int, stage: str) -> dict[str, dict[str, Any]]:
        """The recorded job of every unit of a stage (a live dict: add to it, then save the state)."""
        return self.jobs.setdefault(str(t), {}).setdefault(stage, {})

    def job_ids(self) -> list[str]:
        """Every recorded job id of the run (array tasks as ``812_3``)."""
        return [
            r["job_id"] for stages in self.jobs.values() for units in stages.values() for r in units.values()
        ]

    def invalidate(self, t: int, stage: str) -> None:
        """Forget ``stage`` of iteration ``t`` and everything after it (outputs and recorded jobs)."""
        first = STAGES.index(stage)
        for table in (self.stages, self.jobs):
            for key in list(table):
                it = int(key)
                if it > t:
                    del table[key]
                elif it == t:
                    for s in STAGES[first:]:
                        table[key].pop(s, None)

    def to_dict(self) -> dict[str, Any]:
        return {
            "schema_version": SCHEMA_VERSION,
            "config_hash": self.config_hash,
            "iterations_total": self.iterations_total,
            "iteration": self.iteration,
            "done": self.done,
            "ratings": self.ratings,
            "rating_history": self.rating_history,
            "adapters": self.adapters,
            "stages": self.stages,
            "jobs": self.jobs,
            "launcher_job": self.launcher_job,
        }

    @classmethod
    def from_dict(cls, d: dict[str, Any], source: str) -> RunState:
        if not isinstance(d, dict):
            raise StateError(f"{source}: expected a JSON object, got {type(d).__name__}")
        version = d.get("schema_version")
        if version != SCHEMA_VERSION:
            raise StateError(f"{source}: schema_version {version!r}, this sparta-hpc reads {SCHEMA_VERSION}")
        missing = [k for k in ("config_hash", *STATE_KEYS) if k not in d]
        if missing:
            raise StateError(f"{source}: missing keys {missing}")
        return cls(
            config_hash=d["config_hash"],
            iterations_total=int(d["iterations_total"]),
            iteration=int(d["iteration"]),
            ratings=d["ratings"],
            rating_history=d["rating_history"],
            adapters=d["adapters"],
            stages=d["stages"],
            jobs=d.get("jobs", {}),
            launcher_job=d.get("launcher_job"),
        )


STATE_KEYS = ("iterations_total", "iteration", "ratings", "rating_history", "adapters", "stages")
"""Keys every state file holds besides ``config_hash`` and ``schema_version``."""


def load_state(run: RunDir) -> RunState | None:
    if not run.state_file.exists():
        return None
    return RunState.from_dict(read_json(run.state_file), str(run.state_file))


def save_state(run: RunDir, state: RunState) -> None:
    """Write the state, after checking that this process still holds the run's lock if it took it."""
    check_lock(run.lock_file)
    write_json(run.state_file, state.to_dict())


def checksums(run: RunDir, paths: list[Path]) -> dict[str, str | None]:
    """``{relative path: sha256}`` of stage outputs (files or adapter directories)."""
    return {run.relative(p): sha256_path(p) for p in paths}


def first_invalid_stage(run: RunDir, state: RunState) -> tuple[int, str] | None:
    """The earliest recorded stage whose outputs are missing or changed since they were recorded."""
    for key in sorted(state.stages, key=int):
        for stage in STAGES:
            entry = state.stages[key].get(stage)
            if entry is None:
                continue
            for rel, digest in entry["outputs"].items():
                if sha256_path(run.root / rel) != digest:
                    return int(key), stage
    return None


def leaderboard_text(rows: list[dict[str, Any]], *, change: bool = False) -> str:
    """``RunState.leaderboard`` as an aligned text table; ``change``: with the change column."""
    width = max([len(r["player"]) for r in rows] + [6])
    head = f"  {'#':>2}  {'player':<{width}}  {'rating':>10}  {'deviation':>9}"
    lines = [head + (f"  {'change':>9}" if change else "")]
    for r in rows:
        line = f"  {r['rank']:>2}  {r['player']:<{width}}  {r['rating']:>10.4f}  {r['deviation']:>9.4f}"
        if change:
            line += f"  {'' if r['change'] is None else format(r['change'], '+9.4f'):>9}"
        lines.append(line)
    return "\n".join(lines)
