"""Every path of a run directory, atomic writes, JSONL records and checksums (drawn in docs/run-directory.md).

No other module builds a path inside a run directory by hand: it asks ``RunDir``.
"""

from __future__ import annotations

import hashlib
import json
import os
import tempfile
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any


class RecordError(ValueError):
    """A record file is malformed; the message names the file and line."""


class RunDir:
    """The run directory tree."""

    def __init__(self, root: str | Path) -> None:
        self.root = Path(root).resolve()

    # run level
    @property
    def config_file(self) -> Path:
        return self.root / "config.yaml"

    @property
    def state_file(self) -> Path:
        return self.root / "state.json"

    @property
    def lock_file(self) -> Path:
        return self.root / "launcher.lock"

    @property
    def events_file(self) -> Path:
        return self.root / "events.jsonl"

    @property
    def tensorboard_dir(self) -> Path:
        """TensorBoard event files (only with ``run.tensorboard=true``)."""
        return self.root / "tensorboard"

    @property
    def report_dir(self) -> Path:
        """Default output folder of ``sparta-hpc report`` (leaderboard, plots, report.html)."""
        return self.root / "report"

    @property
    def tiny_base(self) -> Path:
        return self.root / "models" / "tiny-base"

    def initial_adapter(self, player: str) -> Path:
        return self.root / "models" / "initial" / player

    # iteration level
    def iteration(self, t: int) -> Path:
        return self.root / f"iter_{t:03d}"

    def stage(self, t: int, stage: str) -> Path:
        return self.iteration(t) / stage

    def matches(self, t: int) -> Path:
        return self.stage(t, "plan") / "matches.jsonl"

    def players(self, t: int) -> Path:
        """Each player's base and adapter at the start of iteration t (written by the plan stage)."""
        return self.stage(t, "plan") / "players.json"

    def shard(self, t: int, stage: str, shard: int) -> Path:
        return self.stage(t, stage) / f"shard_{shard:05d}.jsonl"

    def shard_parts(self, t: int, stage: str, shard: int) -> Path:
        """Chunks a running shard has finished; merged into ``shard()`` when the shard ends."""
        return self.stage(t, stage) / f"shard_{shard:05d}.parts"

    def judged(self, t: int) -> Path:
        return self.stage(t, "rate") / "judged.jsonl"

    def ratings(self, t: int) -> Path:
        return self.stage(t, "rate") / "ratings.json"

    def preferences(self, t: int) -> Path:
        return self.stage(t, "rate") / "preferences.jsonl"

    def rate_report(self, t: int) -> Path:
        return self.stage(t, "rate") / "report.json"

    def adapter(self, t: int, player: str) -> Path:
        return self.stage(t, "train") / player / "adapter"

    def train_work(self, t: int, player: str) -> Path:
        """Trainer checkpoints of one player's DPO job (what a requeued job resumes from)."""
        return self.stage(t, "train") / player / "work"

    def train_stats(self, t: int, player: str) -> Path:
        return self.stage(t, "train") / player / "stats.json"

    def eval_models(self, t: int) -> Path:
        """``{label: {player: {base, adapter}}}``: the models iteration t's evaluate stage evaluates."""
        return self.stage(t, "evaluate") / "models.json"

    def eval_records(self, t: int, label: str, player: str, split: str, shard: int) -> Path:
        """Records of one evaluation unit: one model (label, player) on one shard of one split."""
        return self.stage(t, "evaluate") / label / player / f"{split}_{shard:05d}.jsonl"

    def eval_parts(self, t: int, label: str, player: str, split: str, shard: int) -> Path:
        """Chunks a running evaluation unit has finished; merged into ``eval_records()`` when it ends."""
        return self.stage(t, "evaluate") / label / player / f"{split}_{shard:05d}.parts"

    def eval_judge_adapter(self, name: str) -> Path:
        """The random tiny adapter of an ``eval.judge_model`` whose adapter is ``tiny``."""
        return self.root / "models" / "eval-judge" / name

    def jobs(self, t: int, stage: str) -> Path:
        """submitit's folder (pickles and logs) of one stage's jobs."""
        return self.root / "jobs" / f"iter_{t:03d}" / stage

    @property
    def launcher_jobs(self) -> Path:
        """submitit's folder of the launcher's own job (``--detach``): its log is the run's log."""
        return self.root / "jobs" / "launcher"

    @property
    def cancel_file(self) -> Path:
        """Written by ``sparta-hpc cancel``: a launcher that sees it stops; a new launcher removes it."""
        return self.root / "cancelled.json"

    @property
    def launcher_job_file(self) -> Path:
        """``{job_id, submitted, argv}`` of the detached launcher, written when it is submitted."""
        return self.root / "launcher_job.json"

    def relative(self, path: Path) -> str:
        return str(path.resolve().relative_to(self.root))


@contextmanager
def _temporary_sibling(path: Path, suffix: str = ".tmp") -> Iterator[Path]:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, name = tempfile.mkstemp(prefix=f".{path.name}.", suffix=suffix, dir=path.parent)
    os.close(fd)
    tmp = Path(name)
    try:
        yield tmp
    finally:
        tmp.unlink(missing_ok=True)


def atomic_write_text(path: Path, text: str) -> None:
    """Write to a temp file, fsync, rename: readers see the old file or the whole new one."""
    with _temporary_sibling(path) as tmp:
        with open(tmp, "w", encoding="utf-8") as f:
            f.write(text)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    _fsync_dir(path.parent)


def _fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def dump_json(obj: Any) -> str:
    return json.dumps(obj, ensure_ascii=False, sort_keys=True, indent=1) + "\n"


def write_json(path: Path, obj: Any) -> None:
    atomic_write_text(path, dump_json(obj))


def read_json(path: Path) -> Any:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as e:
        raise RecordError(f"{path}:{e.lineno}: not valid JSON: {e.msg}") from None


def jsonl_text(records: Iterable[dict[str, Any]]) -> str:
    return "".join(json.dumps(r, ensure_ascii=False, sort_keys=True) + "\n" for r in records)


def write_jsonl(path: Path, records: Iterable[dict[str, Any]]) -> None:
    atomic_write_text(path, jsonl_text(records))


def read_jsonl(path: Path) -> list[dict[str, Any]]:
    """All records of a JSONL file; a bad line raises RecordError naming ``path:line``."""
    return [record for _, record in _numbered_records(path)]


def _numbered_records(path: Path) -> list[tuple[int, dict[str, Any]]]:
    """``(line number, record)`` of every non-blank line."""
    records = []
    with open(path, encoding="utf-8") as f:
        for lineno, line in enumerate(f, start=1):
            if not line.strip():
                continue
            try:
                record = json.loads(line)
            except json.JSONDecodeError as e:
                raise RecordError(f"{path}:{lineno}: not valid JSON: {e.msg}") from None
            if not isinstance(record, dict):
                raise RecordError(f"{path}:{lineno}: a record must be a JSON object")
            records.append((lineno, record))
    return records


def parse_records(path: Path, parse: Any) -> list[Any]:
    """``read_jsonl`` then ``parse(dict)`` per line, with ``path:line`` on any error."""
    out = []
    for lineno, record in _numbered_records(path):
        try:
            out.append(parse(record))
        except (KeyError, TypeError, ValueError) as e:
            raise RecordError(f"{path}:{lineno}: {e}") from None
    return out


def sha256_file(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def sha256_path(path: Path) -> str | None:
    """Checksum of a file, or of a directory's files (names and contents); None if missing."""
    if path.is_file():
        return sha256_file(path)
    if not path.is_dir():
        return None
    h = hashlib.sha256()
    for f in sorted(p for p in path.rglob("*") if p.is_file()):
        h.update(str(f.relative_to(path)).encode() + b"\0" + sha256_file(f).encode())
    return h.hexdigest()


def atomic_replace_dir(tmp: Path, final: Path) -> None:
    """Move a fully written directory into place (replacing an older one)."""
    if final.exists():
        old = final.with_name(f".{final.name}.old")
        if old.exists():
            _rmtree(old)
        os.replace(final, old)
        os.replace(tmp, final)
        _rmtree(old)
    else:
        final.parent.mkdir(parents=True, exist_ok=True)
        os.replace(tmp, final)
    _fsync_dir(final.parent)


def _rmtree(path: Path) -> None:
    import shutil

    shutil.rmtree(path, ignore_errors=True)
