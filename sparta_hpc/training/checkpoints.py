"""Trainer checkpoints of a player's DPO across attempts: the newest complete one, adopting another attempt's,
and the stats of the attempt that published the adapter."""

from __future__ import annotations

import json
import re
import shutil
from pathlib import Path
from typing import Any

from sparta_hpc.files import staging_dir, whole_json

STATS_FILE = "dpo_stats.json"
"""Written into an attempt's work folder just before it publishes the adapter."""
_CHECKPOINT = re.compile(r"^checkpoint-(\d+)$")


def published_stats(work: Path) -> dict[str, Any]:
    """The stats of the run that published the adapter: this attempt's, or another attempt's (a sibling
    folder of ``work``); a stub when none is left (that run ended between publishing and saving them)."""
    for candidate in [work, *sorted(p for p in work.parent.glob("*") if p.is_dir() and p != work)]:
        if whole_json(candidate / STATS_FILE):  # not one cut off by a kill
            return dict(json.loads((candidate / STATS_FILE).read_text()))
    return {"published_by_another_attempt": True}


def adopt_checkpoint(work: Path, attempts: Path) -> Path | None:
    """Give a new attempt at a player's DPO the newest complete checkpoint of the earlier attempts.

    ``attempts`` holds one folder per attempt (``work`` is one of them; checkpoints directly in ``attempts``
    come from runs made before attempts had folders). Nothing is copied when ``work`` has a checkpoint of its
    own (a requeued job). The copy is taken whole or not at all: another attempt may still be running and
    rotating its checkpoints away. Returns the adopted checkpoint's copy, or None.
    """
    if last_checkpoint(work) is not None or not attempts.is_dir():
        return None
    found = [last_checkpoint(d) for d in [attempts, *attempts.iterdir()] if d.is_dir() and d != work]
    newest = sorted((c for c in found if c is not None), key=_step, reverse=True)
    for checkpoint in newest:
        try:
            with staging_dir(work / checkpoint.name) as tmp:
                shutil.copytree(checkpoint, tmp, dirs_exist_ok=True)
        except OSError:
            continue  # rotated away while we copied: try the next one
        return work / checkpoint.name
    return None


def _step(checkpoint: Path) -> int:
    match = _CHECKPOINT.match(checkpoint.name)
    assert match is not None  # last_checkpoint returns checkpoint-N folders only
    return int(match.group(1))


def last_checkpoint(work_dir: Path) -> Path | None:
    """The newest complete ``checkpoint-N`` of ``work_dir``: its trainer_state.json (written last) parses."""
    steps = []
    for path in work_dir.iterdir() if work_dir.is_dir() else []:
        match = _CHECKPOINT.match(path.name)
        if match and whole_json(path / "trainer_state.json"):
            steps.append((int(match.group(1)), path))
    return max(steps)[1] if steps else None
