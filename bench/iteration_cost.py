"""Run the demo on the Slurm test cluster twice, with the separate stage layout and with the combat layout
(``run.stage_layout``), and print side by side per iteration: wall time, model loads and Slurm jobs; then the
ratios, and whether both runs wrote the same ratings, preference pairs and records.

    python bench/iteration_cost.py [--keep DIR] [key=value ...]      # e.g. run.iterations=2

Runs ``launch.py --config configs/debug.yaml --cluster slurm --cluster-preset local-slurm`` once per layout,
one after the other (the shared test cluster: run it inside ``flock /tmp/slurm-tests.lock``). Counted from the
run directory, not estimated:

- wall time of iteration t: from the first ``stage_start`` of t to the last ``stage_end`` of t in
  ``events.jsonl`` (iteration 0 includes the plan stage's job that builds the tiny models, in both layouts);
- Slurm jobs: the array tasks the launcher submitted for t (``submitted`` events, ``num_tasks``);
- model loads: the array tasks of the stages that load models: the launcher submits a unit only when its
  output is missing, and every generate, judge, combat (submitted as the generate stage), train and evaluate
  task then loads its model (engine or trainer) once. The plan stage's job builds the tiny models and loads
  none.

A benchmark, not a test: it needs ``slurm/testcluster.sh`` running and takes minutes. Exit status 1 when the
two layouts' records differ.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import subprocess
import sys
import tempfile
import time
from collections import defaultdict
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
LAYOUTS = ("separate", "combat")
LOADING_STAGES = ("generate", "judge", "train", "evaluate")
COMPARED = (
    "iter_*/plan/matches.jsonl",
    "iter_*/generate/shard_*.jsonl",
    "iter_*/judge/shard_*.jsonl",
    "iter_*/rate/*.json*",
    "iter_*/evaluate/*/*/*.jsonl",
)
"""Records both layouts must write byte for byte (ratings and preference pairs are ``rate/*``). Evaluation
records are keyed by unit (``evaluate/<label>/<player>/<split>``): the combat layout writes those of the
models after iteration t in iteration t + 1's folder."""


def run_demo(run_dir: Path, layout: str, overrides: list[str]) -> float:
    """The demo through Slurm with ``run.stage_layout=layout``; the launcher's wall time in seconds."""
    cmd = [sys.executable, str(ROOT / "launch.py"), "--config", str(ROOT / "configs" / "debug.yaml")]
    cmd += ["--cluster", "slurm", "--cluster-preset", "local-slurm", "--run-dir", str(run_dir)]
    cmd += [f"run.stage_layout={layout}", *overrides]
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "TOKENIZERS_PARALLELISM": "false"}
    start = time.monotonic()
    proc = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True)
    if proc.returncode != 0:
        sys.exit(f"the {layout} demo failed:\n{(proc.stdout + proc.stderr)[-3000:]}")
    return time.monotonic() - start


def epoch(text: str) -> float:
    return datetime.strptime(text, "%Y-%m-%dT%H:%M:%S.%fZ").replace(tzinfo=UTC).timestamp()


def per_iteration(run_dir: Path) -> dict[int, dict[str, Any]]:
    """``{t: {seconds, train, jobs, loads, stages}}`` from the run's events (``train``: the train stage's
    seconds, the same work in both layouts)."""
    events = [json.loads(line) for line in (run_dir / "events.jsonl").read_text().splitlines()]
    rows: dict[int, dict[str, Any]] = defaultdict(lambda: {"jobs": 0, "loads": 0, "stages": [], "train": 0.0})
    first: dict[int, float] = {}
    last: dict[int, float] = {}
    started: dict[tuple[int, str], float] = {}
    for e in events:
        t = e.get("iteration")
        if t is None:
            continue
        if e["kind"] == "stage_start":
            first.setdefault(t, epoch(e["time"]))
            started[t, e["stage"]] = epoch(e["time"])
        elif e["kind"] == "stage_end":
            last[t] = epoch(e["time"])
            if e["stage"] == "train":
                rows[t]["train"] = last[t] - started[t, "train"]
        elif e["kind"] == "submitted":
            row = rows[t]
            row["jobs"] += e["num_tasks"]
            row["stages"].append(f"{e['stage']}:{e['num_tasks']}")
            if e["stage"] in LOADING_STAGES:
                row["loads"] += e["num_tasks"]
    for t in first:
        rows[t]["seconds"] = last[t] - first[t]
    return dict(sorted(rows.items()))


def records(run_dir: Path) -> dict[str, bytes]:
    files = {p for g in COMPARED for p in run_dir.glob(g) if p.is_file() and not p.name.startswith(".")}
    return {
        re.sub(r"^iter_\d+/evaluate/", "evaluate/", str(p.relative_to(run_dir))): p.read_bytes()
        for p in files
    }


def report(runs: dict[str, Path], seconds: dict[str, float]) -> bool:
    """Print the table and the ratios; True when both layouts wrote the same records."""
    rows = {layout: per_iteration(run_dir) for layout, run_dir in runs.items()}
    for layout in LAYOUTS:
        for r in rows[layout].values():
            r["other"] = r["seconds"] - r["train"]
    print(
        f"{'iter':>4}  {'layout':<9} {'wall (s)':>8} {'train':>6} {'other':>6} {'loads':>5} {'jobs':>4}  "
        "tasks"
    )
    for t in rows["separate"]:
        for layout in LAYOUTS:
            r = rows[layout][t]
            tasks = " ".join(r["stages"])
            print(
                f"{t:>4}  {layout:<9} {r['seconds']:>8.1f} {r['train']:>6.1f} {r['other']:>6.1f} "
                f"{r['loads']:>5} {r['jobs']:>4}  {tasks}"
            )
    keys = ("seconds", "train", "other", "loads", "jobs")
    mean = {
        layout: {k: sum(r[k] for r in rows[layout].values()) / len(rows[layout]) for k in keys}
        for layout in LAYOUTS
    }
    print("per iteration (mean)      separate    combat   combat/separate")
    names = (
        ("seconds", "wall time (s)"),
        ("train", "  of it train (s)"),
        ("other", "  of it the rest (s)"),
        ("loads", "model loads"),
        ("jobs", "Slurm jobs"),
    )
    for key, name in names:
        a, b = mean["separate"][key], mean["combat"][key]
        print(f"{name:<22} {a:>11.1f} {b:>9.1f} {b / a:>17.2f}")
    print(f"whole run (launcher wall, s) {seconds['separate']:>7.1f} {seconds['combat']:>9.1f} "
          f"{seconds['combat'] / seconds['separate']:>17.2f}")  # fmt: skip
    ours, theirs = records(runs["combat"]), records(runs["separate"])
    same = ours == theirs
    differ = sorted(k for k in set(ours) | set(theirs) if ours.get(k) != theirs.get(k))
    ratings = all(ours.get(k) == theirs.get(k) for k in theirs if "/rate/" in k)
    print(
        f"records compared: {len(theirs)} files; identical: {same}; "
        f"ratings and preference pairs identical: {ratings}"
        + (f"; differing: {', '.join(differ[:10])}" if differ else "")
    )
    return same


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--keep", help="keep both run directories under this folder")
    parser.add_argument("overrides", nargs="*", metavar="key=value")
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="iteration-cost-") as tmp:
        base = Path(args.keep) if args.keep else Path(tmp)
        runs = {layout: base / layout for layout in LAYOUTS}
        seconds = {layout: run_demo(runs[layout], layout, args.overrides) for layout in LAYOUTS}
        same = report(runs, seconds)
    return 0 if same else 1


if __name__ == "__main__":
    sys.exit(main())
