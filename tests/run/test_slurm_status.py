"""``sparta-hpc status`` of a real Slurm run (slurm/testcluster.sh): units and live job states from one
squeue call while the launcher waits; then, the launcher SIGKILLed, a stopped run whose elapsed time stands
still, whose ``--watch`` ends, and whose surviving jobs still write their progress (chunks per unit)."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest

from tests.run.test_slurm_pipeline import FAST, ROOT, hold, launch, live, state, wait_until
from tests.slurm_cluster import SlurmCluster

pytestmark = [pytest.mark.slurm, pytest.mark.slow]


def status(run_dir: Path, *args: str, path: str = "") -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "PATH": f"{path}{os.pathsep}{os.environ['PATH']}"} if path else None
    cmd = [sys.executable, "-m", "sparta_hpc.cli", "status", str(run_dir), *args]
    return subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=120, env=env)


def row(doc: dict[str, Any], stage: str) -> dict[str, Any]:
    return next(r for r in doc["stages"] if (r["iteration"], r["stage"]) == (0, stage))


def test_status_of_a_live_then_killed_slurm_run(slurm_cluster: SlurmCluster, tmp_path: Path) -> None:
    run_dir, release = tmp_path / "run", tmp_path / "release"
    shim, calls = tmp_path / "bin", tmp_path / "squeue_calls"
    shim.mkdir()
    (shim / "squeue").write_text(f'#!/bin/sh\necho "$*" >> {calls}\nexec {shutil.which("squeue")} "$@"\n')
    (shim / "squeue").chmod(0o755)
    proc = launch(run_dir, [*FAST, hold("generate", release)])

    def generate_jobs() -> list[str]:
        found = state(run_dir)["jobs"] if (run_dir / "state.json").exists() else {}
        return sorted(r["job_id"] for r in found.get("0", {}).get("generate", {}).values())

    held: list[str] = []
    try:
        wait_until(lambda: len(generate_jobs()) == 2 and live(*generate_jobs()), 240, "generate jobs", proc)
        held = generate_jobs()
        seen: dict[str, Any] = {}

        def both_running() -> bool:
            seen["doc"] = json.loads(status(run_dir, "--json", path=str(shim)).stdout)
            return row(seen["doc"], "generate").get("jobs") == {"RUNNING": 2}

        wait_until(both_running, 60, "squeue to show both held generate tasks running", proc)
        doc = seen["doc"]
        assert doc["launcher"] == "running" and doc["queue"] == "ok"
        generate = row(doc, "generate")
        assert generate["state"] == "running"
        assert generate["units"] == {"total": 2, "done": 0, "started": 0}, "held before any Python ran"
        assert sorted(u["job_id"] for u in generate["active"]) == held
        assert all(line.endswith(f"-j {held[0].split('_')[0]}") for line in calls.read_text().splitlines())
        queries = len(calls.read_text().splitlines())
        text = status(run_dir, path=str(shim)).stdout
        assert "iter 0 generate: units 0/2 done" in text and f"job {held[0]}  running" in text
        assert len(calls.read_text().splitlines()) == queries + 1, "one squeue call per status"

        proc.send_signal(signal.SIGKILL)
        proc.wait()
        proc.stdout.close()
        first = json.loads(status(run_dir, "--json").stdout)
        time.sleep(1.5)
        second = json.loads(status(run_dir, "--json").stdout)
        assert first["launcher"] == second["launcher"] == "stopped"
        assert first["elapsed_seconds"] == second["elapsed_seconds"], "elapsed stops when the launcher stops"
        assert row(first, "generate")["seconds"] == row(second, "generate")["seconds"]
        assert row(second, "generate")["state"] == "stopped"
        assert row(second, "generate")["jobs"] == {"RUNNING": 2}, "the jobs outlive their launcher"
        assert "run the same command to reattach" in status(run_dir).stdout
        watched = status(run_dir, "--watch", "0.5")
        assert watched.returncode == 1 and "run the same command again to resume it" in watched.stdout

        release.touch()  # the orphaned jobs run on and report their chunks
        progress = run_dir / "progress" / "iter_000" / "generate"

        def reported() -> dict[str, Any]:
            files = sorted(progress.glob("*.json")) if progress.is_dir() else []
            return {p.stem: json.loads(p.read_text()) for p in files}

        wait_until(
            lambda: all(r["finished"] for r in reported().values()) and len(reported()) == 2, 120, "units"
        )
        units = reported()
        assert {u: r["attempt"] for u, r in units.items()} == {u: j for u, j in zip("01", held, strict=True)}
        for r in units.values():
            assert r["chunks"][0] == r["chunks"][1] == -(-r["items"][1] // 4) and r["items"][1] > 0
        done = row(json.loads(status(run_dir, "--json").stdout), "generate")
        assert done["units"] == {"total": 2, "done": 2, "started": 0}
        assert done["chunks"] == {
            "done": sum(r["chunks"][0] for r in units.values()),
            "total": done["chunks"]["total"],
        }
    finally:
        if proc.poll() is None:
            proc.kill()
        subprocess.run(["scancel", *held], capture_output=True, check=False)
        release.touch()
