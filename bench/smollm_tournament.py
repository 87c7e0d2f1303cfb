"""The SmolLM2 tournament (configs/smollm.yaml) on the CPU: run it, then measure what a real model does.

    python bench/smollm_tournament.py [--run-dir bench/out/smollm] [--json bench/out/smollm.json]

Runs ``launch.py --config configs/smollm.yaml --cluster local`` (resumes, or does nothing if the run is done;
needs ``bash scripts/get-smollm2.sh`` first), then reads the run directory: time per stage and iteration
(``events.jsonl``), the generate judge's parse rate, preference pairs kept, the rating spread after each
iteration, and a few real answers with their judges' outputs. The logprob judge is measured on the same
answers: iteration 0's judge requests are scored again with ``judge.method=logprob`` (same judges, prompts
and cut), giving its score spread and the probability mass on the ten scores.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
from collections import defaultdict
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from sparta_hpc.config import load_saved_config  # noqa: E402
from sparta_hpc.files import read_jsonl  # noqa: E402
from sparta_hpc.jobs.common import load_engine, players_at  # noqa: E402
from sparta_hpc.jobs.generate import read_generations  # noqa: E402
from sparta_hpc.jobs.judge import judge_requests  # noqa: E402
from sparta_hpc.method.types import Match  # noqa: E402
from sparta_hpc.store.rundir import STAGES, RunDir  # noqa: E402


def run_tournament(run_dir: Path) -> float:
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "TOKENIZERS_PARALLELISM": "false"}
    start = time.monotonic()
    cmd = [sys.executable, "launch.py", "--config", "configs/smollm.yaml", "--cluster", "local"]
    subprocess.run([*cmd, "--run-dir", str(run_dir)], cwd=ROOT, env=env, check=True)
    return time.monotonic() - start


def stage_seconds(run: RunDir) -> dict[int, dict[str, float]]:
    """Seconds of each stage's last completed pass, by iteration."""
    out: dict[int, dict[str, float]] = defaultdict(dict)
    for e in read_jsonl(run.root / "events.jsonl"):
        if e.get("kind") == "stage_end":
            out[e["iteration"]][e["stage"]] = e["seconds"]
    return dict(out)


def judged(run: RunDir, t: int) -> list[dict[str, Any]]:
    return [r for f in sorted(run.stage(t, "judge").glob("shard_*.jsonl")) for r in read_jsonl(f)]


def logprob_rescore(run: RunDir) -> dict[str, Any]:
    """Iteration 0's judge requests scored by the logprob judge (same judges, prompts, cut)."""
    cfg = load_saved_config(run.config)
    cfg.judge.method = "logprob"
    matches = [Match.from_dict(m) for m in read_jsonl(run.matches(0))]
    requests = judge_requests(cfg, 0, matches, read_generations(run, 0, cfg.generate.num_shards))
    engine = load_engine(cfg, players_at(run, 0))
    start = time.monotonic()
    scores = engine.expected_scores(requests)
    seconds = time.monotonic() - start
    engine.close()
    values = [s.score for s in scores]
    return {
        "requests": len(values),
        "min": round(min(values), 3),
        "max": round(max(values), 3),
        "stdev": round(statistics.pstdev(values), 3),
        "mean_mass": round(statistics.fmean(s.mass for s in scores), 3),
        "seconds": round(seconds, 1),
    }


def measure(run: RunDir) -> dict[str, Any]:
    state = json.loads((run.root / "state.json").read_text())
    iterations = state["iteration"]
    rows = []
    for t in range(iterations):
        scores = [s for r in judged(run, t) for s in r["scores"]]
        ratings = json.loads(run.ratings(t).read_text())
        values = [r["rating"] if isinstance(r, dict) else r for r in ratings.values()]
        rows.append(
            {
                "iteration": t,
                "judge_scores": len(scores),
                "parsed": sum(s is not None for s in scores),
                "pairs": sum(1 for _ in read_jsonl(run.preferences(t))),
                "rating_spread": round(max(values) - min(values), 4),
            }
        )
    generations = [r for r in read_jsonl(run.shard(0, "generate", 0))][:3]
    raws = {r["match_id"]: r["raw"] for r in judged(run, 0)}
    samples = [
        {
            "prompt_match": g["match_id"],
            "player": g["player"],
            "answer": g["response"],
            "judge": raws.get(g["match_id"]),
        }
        for g in generations
    ]
    return {"iterations": rows, "stage_seconds": stage_seconds(run), "samples": samples}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--run-dir", default=str(ROOT / "bench" / "out" / "smollm"))
    p.add_argument("--json", help="also write the results here")
    p.add_argument("--no-run", action="store_true", help="only measure an existing run directory")
    args = p.parse_args()
    run = RunDir(Path(args.run_dir))
    wall = None if args.no_run else round(run_tournament(run.root), 1)
    result = {"wall_seconds": wall, **measure(run), "logprob_iter0": logprob_rescore(run)}
    print("| iteration | generate judge parsed | pairs kept | rating spread after |")
    print("|---|---|---|---|")
    for r in result["iterations"]:
        rate = f"{r['parsed']}/{r['judge_scores']} ({100 * r['parsed'] / max(1, r['judge_scores']):.0f}%)"
        print(f"| {r['iteration']} | {rate} | {r['pairs']} | {r['rating_spread']} |")
    print()
    print("| iteration | " + " | ".join(STAGES) + " |")
    print("|---" * (len(STAGES) + 1) + "|")
    for t, secs in sorted(result["stage_seconds"].items()):
        print(f"| {t} | " + " | ".join(f"{secs.get(s, 0):.1f} s" for s in STAGES) + " |")
    print(f"\nlogprob judge on iteration 0's answers: {result['logprob_iter0']}")
    for s in result["samples"]:
        print(f"\n{s['player']} ({s['prompt_match']}): {s['answer']!r}\n  judges wrote: {s['judge']!r}")
    if wall is not None:
        print(f"\nsmollm_tournament: whole run {wall} s (launch.py, including start-up)")
    if args.json:
        Path(args.json).write_text(json.dumps(result, indent=1) + "\n")


if __name__ == "__main__":
    main()
