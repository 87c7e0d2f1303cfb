"""Run the demo on the Slurm test cluster and print what the launcher costs: per stage, the gap between its
last job's end and the next stage's first submission, and the scheduler queries it made per minute.

    python bench/slurm_overhead.py [--run-dir DIR] [key=value ...]      # e.g. run.iterations=1

Runs ``launch.py --config configs/debug.yaml --cluster-preset local-slurm`` (the CPU demo, one sacct call per
``cluster.poll_interval_s`` = 2 s) with ``sacct``/``squeue`` wrapped by a script that logs every call. A job's
end is when it wrote its result file (sacct's End has 1-second resolution). Targets: gap < 5 s with the test
cluster's 2 s scheduling interval; one query per poll whatever the number of array tasks. A benchmark, not a
test: it needs slurm/testcluster.sh running and takes minutes.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent


def wrap_commands(folder: Path, log: Path) -> Path:
    """A bin folder whose sacct and squeue log each call to ``log`` and run the real command."""
    folder.mkdir(parents=True, exist_ok=True)
    for name in ("sacct", "squeue"):
        real = shutil.which(name)
        if real is None:
            sys.exit(f"{name} not found: start the test cluster (bash slurm/testcluster.sh start)")
        script = f'#!/bin/sh\necho "$(date +%s.%N) {name} $*" >> {log}\nexec {real} "$@"\n'
        (folder / name).write_text(script)
        (folder / name).chmod(0o755)
    return folder


def run_demo(run_dir: Path, overrides: list[str], path: Path) -> float:
    """Run the demo through Slurm; returns the launcher's wall time in seconds."""
    cmd = [sys.executable, str(ROOT / "launch.py"), "--config", str(ROOT / "configs" / "debug.yaml")]
    cmd += ["--cluster", "slurm", "--cluster-preset", "local-slurm", "--run-dir", str(run_dir), *overrides]
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "PATH": f"{path}{os.pathsep}{os.environ['PATH']}"}
    start = time.monotonic()
    proc = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True)
    if proc.returncode != 0:
        sys.exit(f"the demo failed:\n{(proc.stdout + proc.stderr)[-3000:]}")
    return time.monotonic() - start


def epoch(text: str) -> float:
    return datetime.strptime(text, "%Y-%m-%dT%H:%M:%S.%fZ").replace(tzinfo=UTC).timestamp()


def stage_rows(run_dir: Path) -> list[dict[str, Any]]:
    """Per stage with jobs: its tasks, and the gap from its last result to the next stage's submission."""
    events = [json.loads(line) for line in (run_dir / "events.jsonl").read_text().splitlines()]
    submitted = [e for e in events if e["kind"] == "submitted"]
    jobs = json.loads((run_dir / "state.json").read_text())["jobs"]
    rows = []
    for i, event in enumerate(submitted):
        key = (event["iteration"], event["stage"])
        later = [e for e in submitted[i + 1 :] if (e["iteration"], e["stage"]) != key]
        if any((e["iteration"], e["stage"]) == key for e in submitted[i + 1 :]):
            continue  # the stage submitted again (a retry): measure from its last array
        folder = run_dir / "jobs" / f"iter_{key[0]:03d}" / key[1]
        ids = [r["job_id"] for r in jobs[str(key[0])][key[1]].values()]
        last_end = max((folder / f"{j}_0_result.pkl").stat().st_mtime for j in ids)
        gap = epoch(later[0]["time"]) - last_end if later else None
        rows.append({"iteration": key[0], "stage": key[1], "tasks": len(ids), "next": later, "gap": gap})
    return rows


def report(run_dir: Path, seconds: float, queries: list[str]) -> None:
    """Print the gaps per stage and the query rate."""
    config = subprocess.run(["scontrol", "show", "config"], capture_output=True, text=True).stdout
    sched = next((ln.split("=", 1)[1].strip() for ln in config.splitlines() if "SchedulerParam" in ln), "?")
    print(f"demo on Slurm in {seconds:.1f} s (SchedulerParameters={sched})")
    print(f"{'iter':>4}  {'stage':<9} {'tasks':>5}  {'next stage':<10} {'gap (s)':>7}")
    for row in stage_rows(run_dir):
        gap = "-" if row["gap"] is None else f"{row['gap']:.2f}"
        nxt = row["next"][0]["stage"] if row["next"] else "-"
        print(f"{row['iteration']:>4}  {row['stage']:<9} {row['tasks']:>5}  {nxt:<10} {gap:>7}")
    per_query = max((len(q.split()[-1].split(",")) for q in queries), default=0)
    names = ", ".join(sorted({q.split()[1] for q in queries})) or "none"
    rate = len(queries) / seconds * 60
    print(f"scheduler queries: {len(queries)} ({names}) in {seconds:.0f} s = {rate:.1f}/min")
    print(f"job ids per query: at most {per_query} (one per array, never its tasks)")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--run-dir", help="run directory (default: a temporary one, removed afterwards)")
    parser.add_argument("overrides", nargs="*", metavar="key=value")
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="slurm-overhead-") as tmp:
        run_dir = Path(args.run_dir) if args.run_dir else Path(tmp) / "run"
        calls = Path(tmp) / "calls.log"
        seconds = run_demo(run_dir, args.overrides, wrap_commands(Path(tmp) / "bin", calls))
        report(run_dir, seconds, calls.read_text().splitlines() if calls.exists() else [])
    return 0


if __name__ == "__main__":
    sys.exit(main())
