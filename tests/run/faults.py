"""The fault-injection harness's machinery, shared by tests/run/test_faults.py and tests/run/test_pipeline.py.

- ``launch``: ``launch.py`` on the MINI config, optionally pausing every process's writes into one folder
  (``pausing/sitecustomize.py``), so that each partial state on disk lasts long enough to be seen;
- ``KillPoint`` and ``kill_when``: a point inside a stage described by what is on disk (a ``stage_start``
  without ``stage_end``, chunks saved, players trained), and the SIGKILL the moment it holds;
- ``snapshot``: a copy of the reference run as if stopped just before a stage, so that a case only runs from
  there on (the state forgets that stage and everything after it, as a changed output would make it);
- ``compare`` and ``partial_damage``: a run against the reference, at the end (divergent files, records lost
  or duplicated) and right after a fault (every file present must be whole and equal to the reference's);
- ``MATRIX``: one ``Row`` per case, printed and written to a file at the end of the session (conftest.py).

Records name the run's own models relative to the run directory (players.json, models.json, adapter configs:
``store/models.py``), so runs in different folders have the same bytes; the comparison still replaces the
run's and the reference's root by ``<RUN>`` (anything else that names its folder), and the digests equal
``files.sha256_path`` exactly.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import shutil
import signal
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

import pytest

ROOT = Path(__file__).resolve().parents[2]
PAUSING = Path(__file__).resolve().parent / "pausing"
"""The folder of sitecustomize.py, which pauses writes: on PYTHONPATH, it pauses a launcher and its jobs."""
FULL = os.environ.get("SPARTA_FAULT_MATRIX", "").lower() == "full"
"""SPARTA_FAULT_MATRIX=full: every stage x several offsets x both backends (about an hour on 2 cores)."""
MATRIX_FILE = Path(os.environ.get("SPARTA_FAULT_MATRIX_OUT", ROOT / "bench" / "out" / "fault_matrix.md"))

GEN_CHUNK, JUDGE_CHUNK, EVAL_CHUNK, SAVE_STEPS = 4, 8, 8, 4
"""Requests (examples) per saved chunk, DPO steps per trainer checkpoint: every shard and evaluation unit of
MINI has several chunks, and each player's DPO (8 pairs, 8 steps) a checkpoint half-way."""
MINI = [
    "run.iterations=2",
    "plan.num_prompts=8",
    "generate.max_new_tokens=8",
    "train.max_length=64",
    f"train.save_steps={SAVE_STEPS}",
    f"generate.chunk_size={GEN_CHUNK}",
    f"judge.chunk_size={JUDGE_CHUNK}",
    f"eval.chunk_size={EVAL_CHUNK}",
    "eval.max_new_tokens=8",
]
SLURM = ["--cluster-preset", "local-slurm"]
"""Launch options of a run on the Slurm test cluster (with ``cluster.poll_interval_s=1``)."""
PAUSE_S = 0.25
POLL_S = 0.02
STAGES = ("plan", "generate", "judge", "rate", "train", "evaluate")
PLAYERS = ("tiny-a", "tiny-b", "tiny-c", "tiny-d")


# ---------------------------------------------------------------- launching


def launch(
    run_dir: Path,
    *overrides: str,
    backend: str = "inline",
    options: tuple[str, ...] = (),
    pause_in: Path | None = None,
    pause_s: float = PAUSE_S,
    stdout: IO[str] | int = subprocess.PIPE,
) -> subprocess.Popen[str]:
    """``launch.py`` with MINI; ``pause_in``: pause writes under that folder, in the launcher and its jobs."""
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "TOKENIZERS_PARALLELISM": "false"}
    env.pop("SPARTA_TEST_PAUSE_IN", None)
    if pause_in is not None:
        path = [str(PAUSING), *([env["PYTHONPATH"]] if env.get("PYTHONPATH") else [])]
        env |= {
            "PYTHONPATH": os.pathsep.join(path),
            "SPARTA_TEST_PAUSE_IN": str(pause_in.resolve()) + os.sep,
            "SPARTA_TEST_PAUSE_S": str(pause_s),
        }
    cmd = [sys.executable, str(ROOT / "launch.py"), "--cluster", backend, *options, "--run-dir", str(run_dir)]
    cmd += [*MINI, *overrides]
    return subprocess.Popen(cmd, cwd=ROOT, env=env, stdout=stdout, stderr=subprocess.STDOUT, text=True)


def run_to_end(run_dir: Path, *overrides: str, backend: str = "inline", options: tuple[str, ...] = ()) -> str:
    proc = launch(run_dir, *overrides, backend=backend, options=options)
    out, _ = proc.communicate(timeout=900)
    assert proc.returncode == 0, out[-3000:]
    return out


def rerun(
    run_dir: Path, *overrides: str, backend: str = "inline", options: tuple[str, ...] = ()
) -> tuple[int, str]:
    """The same command again, to its end: exit status and output (a case records its row, then asserts)."""
    proc = launch(run_dir, *overrides, backend=backend, options=options)
    out, _ = proc.communicate(timeout=900)
    return proc.returncode, out


def outcome(code: int, out: str, done: str) -> str:
    """``done`` if the rerun succeeded, else what it said."""
    if code == 0:
        return done
    errors = [line for line in out.splitlines() if line.startswith(("error:", "config error"))]
    last = [line for line in out.splitlines() if line.strip()][-1:]  # a traceback's exception
    return f"rerun failed (exit {code}): {(errors or last or [''])[0][:120]}"


def state(run_dir: Path) -> dict[str, Any]:
    path = run_dir / "state.json"
    return json.loads(path.read_text()) if path.exists() else {}


def events(run_dir: Path) -> list[dict[str, Any]]:
    if not (run_dir / "events.jsonl").exists():
        return []
    out = []
    for line in (run_dir / "events.jsonl").read_text(errors="replace").splitlines():
        try:
            out.append(json.loads(line))
        except json.JSONDecodeError:  # a line being appended
            continue
    return out


def inside(run_dir: Path, t: int, stage: str) -> bool:
    """Stage ``stage`` of iteration t has started and has not ended (events.jsonl and state.json agree)."""
    kinds = [e["kind"] for e in events(run_dir) if (e.get("iteration"), e.get("stage")) == (t, stage)]
    try:
        done = stage in state(run_dir).get("stages", {}).get(str(t), {})
    except (OSError, ValueError):  # being replaced
        done = False
    return "stage_start" in kinds and "stage_end" not in kinds and not done


def tail(log: Path, chars: int = 3000) -> str:
    return log.read_text(errors="replace")[-chars:] if log.exists() else ""


# ---------------------------------------------------------------- kill points


@dataclass(frozen=True)
class Partial:
    """What of a stage was on disk at the kill."""

    what: str
    resumed: str | None = None
    """The line the run again must print: a chunked unit resuming after its saved chunks."""


Condition = Callable[[Path], Partial | None]


@dataclass(frozen=True)
class KillPoint:
    """A point inside stage ``stage`` of iteration ``t``, described by what is on disk (``at``):

    ``start`` nothing of the stage written; ``files n`` n of the stage's files (plan, rate); ``chunk k``
    chunk k-1 of the first shard saved, chunk k not (generate, judge); ``players n`` n players trained;
    ``checkpoint`` a player's DPO half-way, at its first trainer checkpoint; ``adapter`` a player's adapter
    published, its stats not; ``units u`` u evaluation units written and no chunk of the next; ``unit u chunk
    k`` the same with k chunks of the next saved.
    """

    t: int
    stage: str
    at: str

    @property
    def name(self) -> str:
        return f"iter {self.t} {self.stage}: {self.at}"

    @property
    def chunked(self) -> bool:
        return "chunk" in self.at


def _visible(folder: Path) -> list[Path]:
    """Files under ``folder`` that are outputs: not temporary (no hidden part) and not a trainer's work."""
    if not folder.is_dir():
        return []
    return [
        p
        for p in folder.rglob("*")
        if p.is_file()
        and not any(part.startswith(".") or part == "work" for part in p.relative_to(folder).parts)
    ]


def _chunks(parts: Path) -> list[str]:
    return sorted(p.name for p in parts.glob("chunk_*.jsonl")) if parts.is_dir() else []


def _lines(path: Path) -> int:
    return len(path.read_text().splitlines())


def _checkpoint_steps(player: Path) -> list[int]:
    """Steps of the complete trainer checkpoints of a player's attempts (their trainer_state.json parses)."""
    steps = []
    for state_file in player.glob("work/*/checkpoint-*/trainer_state.json"):
        try:
            json.loads(state_file.read_text())
        except (OSError, ValueError):
            continue
        steps.append(int(state_file.parent.name.split("-")[1]))
    return steps


def condition(point: KillPoint, reference: Path, exact: bool = True) -> Condition:
    """What must be on disk inside the stage for the kill (sizes from the reference run). ``exact``: the
    counts exactly as named (one process writes in order); else at least them and not all (local jobs write
    in parallel)."""
    it = f"iter_{point.t:03d}"
    ref = reference / it
    kind, *nums = point.at.split()
    numbers = [int(n) for n in nums if n.isdigit()]

    def count_ok(n: int, wanted: int, total: int) -> bool:
        return n == wanted if exact else wanted <= n < total

    def start(r: Path) -> Partial | None:  # evaluate: models.json is the launcher's, before any job
        written = [p for p in _visible(r / it / point.stage) if p.name != "models.json"]
        return None if written else Partial("nothing written")

    def files(r: Path) -> Partial | None:
        names = {
            "plan": ["matches.jsonl", "players.json"],
            "rate": sorted(p.name for p in (ref / "rate").iterdir()),
        }
        paths = [r / it / point.stage / name for name in names[point.stage]]
        written = [p.name for p in paths if p.exists()]
        return (
            Partial(f"{len(written)}/{len(paths)} written: {written}")
            if count_ok(len(written), numbers[0], len(paths))
            else None
        )

    def shard_chunks(r: Path) -> Partial | None:
        size = GEN_CHUNK if point.stage == "generate" else JUDGE_CHUNK
        per_record = 1 if point.stage == "generate" else 2  # a judgment is 2 requests
        total = math.ceil(per_record * _lines(ref / point.stage / "shard_00000.jsonl") / size)
        parts = r / it / point.stage / "shard_00000.parts"
        names = _chunks(parts)
        n = len(names)
        if (r / it / point.stage / "shard_00000.jsonl").exists() or not count_ok(n, numbers[0], total):
            return None
        if exact and names != [f"chunk_{i:05d}.jsonl" for i in range(n)]:
            return None
        return Partial(
            f"{parts.name}: {n}/{total} chunks saved", f"{parts.resolve()}: resuming after {n}/{total}"
        )

    def players(r: Path) -> Partial | None:
        done = [p for p in PLAYERS if (r / it / "train" / p / "stats.json").exists()]
        ok = count_ok(len(done), numbers[0], len(PLAYERS))
        return Partial(f"{len(done)}/{len(PLAYERS)} players trained: {done}") if ok else None

    def checkpoint(r: Path) -> Partial | None:
        for p in PLAYERS:
            folder = r / it / "train" / p
            steps = _checkpoint_steps(folder)
            if steps and max(steps) == SAVE_STEPS and not (folder / "adapter").exists():
                return Partial(f"{p}: DPO at checkpoint-{SAVE_STEPS}, adapter not published")
        return None

    def adapter(r: Path) -> Partial | None:
        for p in PLAYERS:
            folder = r / it / "train" / p
            if (folder / "adapter").is_dir() and not (folder / "stats.json").exists():
                return Partial(f"{p}: adapter published, stats not written")
        return None

    def units(r: Path) -> Partial | None:
        folder = r / it / "evaluate"
        total_units = len(list(ref.glob("evaluate/*/*/*.jsonl")))
        published = [p for p in folder.glob("*/*/*.jsonl")]
        if not count_ok(len(published), numbers[0], total_units):
            return None
        chunked = [(parts, _chunks(parts)) for parts in folder.glob("*/*/*.parts")]
        chunked = [
            (parts, names) for parts, names in chunked if names and not parts.with_suffix(".jsonl").exists()
        ]
        if len(numbers) == 1:  # between two units
            return None if chunked else Partial(f"{len(published)}/{total_units} units written, none started")
        wanted = numbers[1]
        for parts, names in chunked:
            total = math.ceil(_lines(ref / parts.relative_to(r / it).with_suffix(".jsonl")) / EVAL_CHUNK)
            if count_ok(len(names), wanted, total):
                unit = f"{parts.parent.name}/{parts.name}: {len(names)}/{total} chunks"
                what = f"{len(published)}/{total_units} units written, {unit}"
                return Partial(what, f"{parts.resolve()}: resuming after {len(names)}/{total}")
        return None

    table: dict[str, Condition] = {
        "start": start,
        "files": files,
        "chunk": shard_chunks,
        "players": players,
        "checkpoint": checkpoint,
        "adapter": adapter,
        "units": units,
        "unit": units,
    }
    return table[kind]


def kill_when(
    proc: subprocess.Popen[str], ready: Callable[[], bool], log: Path, timeout_s: float = 300
) -> float:
    """SIGKILL ``proc`` as soon as ``ready()``; fail if it ends first or nothing happens for ``timeout_s``.
    Returns the time of the kill (``time.time()``)."""
    deadline = time.monotonic() + timeout_s
    try:
        while not ready():
            if proc.poll() is not None:
                pytest.fail(f"the run ended (exit {proc.returncode}) before the kill condition:\n{tail(log)}")
            if time.monotonic() > deadline:
                pytest.fail(f"the kill condition did not hold within {timeout_s:.0f} s:\n{tail(log)}")
            time.sleep(POLL_S)
    except BaseException:  # a failing case leaves no launcher running on
        proc.kill()
        proc.wait(timeout=60)
        raise
    proc.send_signal(signal.SIGKILL)
    killed = time.time()
    proc.wait(timeout=60)
    assert proc.returncode == -signal.SIGKILL, f"the run ended by itself:\n{tail(log)}"
    return killed


def written_after(run_dir: Path, when: float) -> dict[str, float]:
    """``{file: seconds after when}`` of every file under iter_*/ and models/ written after ``when``."""
    late = {}
    for folder in [*run_dir.glob("iter_*"), run_dir / "models"]:
        for p in folder.rglob("*"):
            try:
                mtime = p.stat().st_mtime
            except FileNotFoundError:
                continue
            if p.is_file() and mtime > when:
                late[str(p.relative_to(run_dir))] = round(mtime - when, 2)
    return late


def done_files(run_dir: Path) -> dict[str, int]:
    """mtime of every output file of every stage the state records as done."""
    out = {}
    for stages in state(run_dir).get("stages", {}).values():
        for entry in stages.values():
            for rel in entry["outputs"]:
                path = run_dir / rel
                for f in [path] if path.is_file() else sorted(path.rglob("*")):
                    out[str(f)] = f.stat().st_mtime_ns
    return out


# ---------------------------------------------------------------- snapshots


def snapshot(reference: Path, to: Path, t: int, stage: str) -> Path:
    """A copy of the reference run as if stopped just before ``stage`` of iteration t: that stage and every
    later one forgotten by the state (as ``open_state`` forgets a changed one) and their folders and events
    gone. Before the plan of iteration 0 that is an empty run directory."""
    from sparta_hpc.run.resume import remove_outputs_from
    from sparta_hpc.store.rundir import RunDir
    from sparta_hpc.store.state import load_state, save_state

    if (t, stage) == (0, "plan"):
        to.mkdir(parents=True)
        return to
    shutil.copytree(reference, to)
    run = RunDir(to)
    loaded = load_state(run)
    assert loaded is not None
    loaded.invalidate(t, stage)
    loaded.iteration = min(loaded.iteration, t)
    save_state(run, loaded)
    remove_outputs_from(run, t, stage)
    later = set(STAGES[STAGES.index(stage) :])
    kept = []
    for line in run.events_file.read_text().splitlines(keepends=True):
        event = json.loads(line)
        u = event.get("iteration")
        if u is not None and (u > t or (u == t and event.get("stage") in later)):
            break
        kept.append(line)
    run.events_file.write_text("".join(kept))
    return to


# ---------------------------------------------------------------- local job processes


def job_pids(folder: Path, task_only: bool = False) -> list[int]:
    """Processes whose command line names the submitit folder (controllers and their tasks; ``task_only``:
    the tasks, which run the job's function)."""
    pids = []
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit() or int(proc.name) == os.getpid():
            continue
        try:
            cmdline = (proc / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
        except OSError:
            continue
        if str(folder) in cmdline and "submitit" in cmdline and (not task_only or "core._submit" in cmdline):
            pids.append(int(proc.name))
    return pids


def alive(pids: list[int]) -> list[int]:
    from sparta_hpc.processes import process_alive, process_identity

    return [p for p in pids if process_alive(process_identity(p))]


def wait_for(condition: Callable[[], Any], seconds: float, what: str) -> None:
    deadline = time.monotonic() + seconds
    while not condition():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.1)


def wait_jobs_gone(run_dir: Path, seconds: float = 15) -> tuple[list[int], float]:
    """Wait up to ``seconds`` for every local job process of the run to end; the survivors (killed then, so
    that nothing writes on) and how long the wait took."""
    start = time.monotonic()
    pids = job_pids(run_dir / "jobs")
    while alive(pids) and time.monotonic() - start < seconds:
        time.sleep(0.1)
    survivors = alive(pids)
    for pid in survivors:
        os.kill(pid, signal.SIGKILL)
    return survivors, time.monotonic() - start


# ---------------------------------------------------------------- comparing with the reference


def _roots(*run_dirs: Path) -> list[bytes]:
    return sorted({str(r.resolve()).encode() for r in run_dirs}, key=len, reverse=True)


def _normal(data: bytes, roots: list[bytes]) -> bytes:
    for root in roots:
        data = data.replace(root, b"<RUN>")
    return data


def _is_record(rel: Path) -> bool:
    return rel.suffix in (".json", ".jsonl") and rel.name != "stats.json"


def _result_files(run_dir: Path) -> Iterator[Path]:
    """Every record file (JSON, JSONL) under iter_*/ but the train stats (they hold timings), every adapter
    directory, and anything a fault left behind (temporaries, chunk folders, trainer checkpoints)."""
    for it in sorted(run_dir.glob("iter_*")):
        for p in sorted(it.rglob("*")):
            rel = p.relative_to(run_dir)
            if "adapter" in rel.parts[:-1] and not any(part.startswith(".") for part in rel.parts):
                continue  # part of an adapter, compared as a whole
            leftover = any(part.startswith(".") for part in rel.parts) or "work" in rel.parts
            if (p.is_dir() and p.name == "adapter") or (p.is_file() and (_is_record(rel) or leftover)):
                yield p


def adapter_digest(folder: Path, roots: list[bytes]) -> str:
    """``files.sha256_path`` of an adapter directory, its files read with the run roots replaced."""
    h = hashlib.sha256()
    for f in sorted(p for p in folder.rglob("*") if p.is_file()):
        h.update(
            str(f.relative_to(folder)).encode()
            + b"\0"
            + hashlib.sha256(_normal(f.read_bytes(), roots)).hexdigest().encode()
        )
    return h.hexdigest()


def results(run_dir: Path, roots: list[bytes]) -> dict[str, bytes]:
    """``{relative path: content}`` of ``_result_files``, roots replaced (an adapter: its digest)."""
    out = {}
    for p in _result_files(run_dir):
        rel = str(p.relative_to(run_dir))
        out[rel] = adapter_digest(p, roots).encode() if p.is_dir() else _normal(p.read_bytes(), roots)
    return out


@dataclass
class Divergence:
    """How a run differs from the reference."""

    files: list[str] = field(default_factory=list)
    """Files that differ, are missing or are extra (leftovers), and ``state.json`` if its ratings differ."""
    lost: int = 0
    """Records (JSONL lines, JSON files, adapters) of the reference missing from the run."""
    duplicated: int = 0
    """Records the run holds more often than the reference does."""

    def __bool__(self) -> bool:
        return bool(self.files or self.lost or self.duplicated)

    def __str__(self) -> str:
        files = f"{len(self.files)} divergent file(s) {self.files[:8]}"
        return f"{files}, {self.lost} records lost, {self.duplicated} duplicated"


def compare(run_dir: Path, reference: Path) -> Divergence:
    """The run against the reference: records, ratings, preference pairs, adapters, state ratings."""
    roots = _roots(run_dir, reference)
    ours, theirs = results(run_dir, roots), results(reference, roots)
    d = Divergence()
    for rel in sorted(set(ours) | set(theirs)):
        mine, ref = ours.get(rel), theirs.get(rel)
        if mine == ref:
            continue
        d.files.append(rel if ref is not None else f"{rel} (extra)" if mine is not None else rel)
        if rel.endswith(".jsonl"):
            a, b = Counter((mine or b"").splitlines()), Counter((ref or b"").splitlines())
            d.lost += sum((b - a).values())
            d.duplicated += sum(n - b[line] for line, n in a.items() if b[line] and n > b[line])
        elif ref is not None:
            d.lost += 1
    mine_state, ref_state = state(run_dir), state(reference)  # {} without a state file
    for key in ("ratings", "rating_history", "done", "iteration"):
        if mine_state.get(key) != ref_state.get(key):
            d.files.append(f"state.json:{key}")
    return d


def _json_object(line: bytes) -> bool:
    try:
        return isinstance(json.loads(line), dict)
    except ValueError:
        return False


def partial_damage(run_dir: Path, reference: Path) -> list[str]:
    """Files a fault left that are not whole: every record, chunk and adapter present must equal the
    reference's (a chunk: its slice of the reference's unit file; a judge chunk, per response, valid JSON)."""
    roots = _roots(run_dir, reference)
    theirs = results(reference, roots)
    damaged = []
    for p in _result_files(run_dir):
        rel = p.relative_to(run_dir)
        if any(part.startswith(".") or part == "work" for part in rel.parts):
            continue  # temporaries and trainer checkpoints: never read as results
        if p.parent.name.endswith(".parts"):
            lines = p.read_bytes().splitlines()
            if rel.parts[1] == "judge":
                ok = all(_json_object(line) for line in lines)
            else:
                size = GEN_CHUNK if rel.parts[1] == "generate" else EVAL_CHUNK
                i = int(p.stem.split("_")[1])
                unit = reference / rel.parent.with_suffix(".jsonl")
                ref_lines = _normal(unit.read_bytes(), roots).splitlines()[i * size : (i + 1) * size]
                ok = [_normal(line, roots) for line in lines] == ref_lines
        else:
            mine = adapter_digest(p, roots).encode() if p.is_dir() else _normal(p.read_bytes(), roots)
            ok = theirs.get(str(rel)) == mine
        if not ok:
            damaged.append(str(rel))
    return damaged


# ---------------------------------------------------------------- the matrix


@dataclass
class Row:
    """One case of the fault matrix."""

    case: str
    backend: str
    point: str
    outcome: str
    divergence: Divergence
    seconds: float
    note: str = ""


MATRIX: list[Row] = []


def record(
    case: str, backend: str, point: str, outcome: str, divergence: Divergence, started: float, note: str = ""
) -> Row:
    """Add a row to the matrix and rewrite its file (so that a matrix cut short keeps its rows);
    ``started``: ``time.monotonic()`` when the case began."""
    row = Row(case, backend, point, outcome, divergence, time.monotonic() - started, note)
    MATRIX.append(row)
    write_matrix()
    return row


def write_matrix() -> str | None:
    """Write the matrix so far to ``MATRIX_FILE``; None, or why it could not."""
    try:
        MATRIX_FILE.parent.mkdir(parents=True, exist_ok=True)
        MATRIX_FILE.write_text("# Fault matrix\n\n" + render(MATRIX) + "\n", encoding="utf-8")
    except OSError as e:
        return str(e)
    return None


def render(rows: list[Row]) -> str:
    """The matrix as a Markdown table and a summary line."""
    columns = ["#", "case", "backend", "fault point", "outcome", "divergent files", "records lost"]
    columns += ["records duplicated", "s", "note"]
    lines = ["| " + " | ".join(columns) + " |", "| " + " | ".join(["---"] * len(columns)) + " |"]
    for i, r in enumerate(rows, start=1):
        files = ", ".join(r.divergence.files[:4]) + (" ..." if len(r.divergence.files) > 4 else "")
        cells = [str(i), r.case, r.backend, r.point, r.outcome, f"{len(r.divergence.files)} {files}".strip()]
        cells += [
            str(r.divergence.lost),
            str(r.divergence.duplicated),
            f"{r.seconds:.0f}",
            r.note.replace("|", "/"),
        ]
        lines.append("| " + " | ".join(cells) + " |")
    bad = sum(1 for r in rows if r.divergence)
    lost, dup = sum(r.divergence.lost for r in rows), sum(r.divergence.duplicated for r in rows)
    mode = "full" if FULL else "ci"
    lines.append("")
    lines.append(
        f"{len(rows)} cases ({mode} matrix), {bad} with divergences, {lost} records lost, {dup} duplicated, "
        f"{sum(r.seconds for r in rows):.0f} s in all"
    )
    return "\n".join(lines)
