"""The SmolLM2 tournament (configs/smollm.yaml) on the CPU: run it, then measure what a real model does.

    python bench/smollm_tournament.py [--run-dir bench/out/smollm] [--json bench/out/smollm.json]

Runs ``launch.py --config configs/smollm.yaml --cluster local`` (resumes, or does nothing if the run is done;
needs ``bash scripts/get-smollm2.sh`` first), then reads the run directory: time per stage and iteration
(``events.jsonl``), the logprob judge's score spread, preference pairs kept, the rating spread after each
iteration, and a few real answers with their scores. The generate judge is measured on the same answers:
iteration 0's judge requests are sent again with ``judge.method=generate`` (same judges, prompts, cut and
decoding settings), giving its parse rate and what the judges wrote.
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
from sparta_hpc.engines.base import Sampling  # noqa: E402
from sparta_hpc.files import read_jsonl  # noqa: E402
from sparta_hpc.jobs.common import load_engine, players_at  # noqa: E402
from sparta_hpc.jobs.generate import read_generations  # noqa: E402
from sparta_hpc.jobs.judge import judge_requests  # noqa: E402
from sparta_hpc.method import judging  # noqa: E402
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


def generate_rejudge(run: RunDir, limit: int | None = None) -> dict[str, Any]:
    """Iteration 0's judge requests (the first ``limit``, or all) answered by the generate judge (same judges,
    prompts, cut, decoding)."""
    cfg = load_saved_config(run.config_file)
    cfg.judge.method = "generate"
    matches = [Match.from_dict(m) for m in read_jsonl(run.matches(0))]
    requests = judge_requests(cfg, 0, matches, read_generations(run, 0, cfg.generate.num_shards))[:limit]
    engine = load_engine(cfg, players_at(run, 0))
    j = cfg.judge
    sampling = Sampling(
        max_new_tokens=j.max_new_tokens, temperature=j.temperature, top_k=j.top_k, top_p=j.top_p
    )
    start = time.monotonic()
    written = engine.generate(requests, sampling)
    seconds = time.monotonic() - start
    engine.close()
    parsed = [judging.parse_score(c.text) for c in written]
    return {
        "requests": len(written),
        "parsed": sum(p is not None for p in parsed),
        "examples": [c.text for c in written[:3]],
        "seconds": round(seconds, 1),
    }


def measure(run: RunDir) -> dict[str, Any]:
    state = json.loads((run.root / "state.json").read_text())
    iterations = state["iteration"]
    rows = []
    for t in range(iterations):
        scores = [s for r in judged(run, t) for s in r["scores"] if s is not None]
        ratings = json.loads(run.ratings(t).read_text())
        values = [r["rating"] if isinstance(r, dict) else r for r in ratings.values()]
        rows.append(
            {
                "iteration": t,
                "judge_scores": len(scores),
                "score_min": round(min(scores), 2),
                "score_max": round(max(scores), 2),
                "score_stdev": round(statistics.pstdev(scores), 3),
                "pairs": sum(1 for _ in read_jsonl(run.preferences(t))),
                "rating_spread": round(max(values) - min(values), 4),
            }
        )
    generations = [r for r in read_jsonl(run.shard(0, "generate", 0))][:3]
    raws = {r["match_id"]: r["scores"] for r in judged(run, 0)}
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
    p.add_argument("--rejudge", type=int, help="send only the first N judge requests to the generate judge")
    args = p.parse_args()
    run = RunDir(Path(args.run_dir))
    wall = None if args.no_run else round(run_tournament(run.root), 1)
    result = {
        "wall_seconds": wall,
        **measure(run),
        "generate_judge_iter0": generate_rejudge(run, args.rejudge),
    }
    print("| iteration | logprob judge scores: min / max / stdev | pairs kept | rating spread after |")
    print("|---|---|---|---|")
    for r in result["iterations"]:
        spread = f"{r['judge_scores']} scores: {r['score_min']} / {r['score_max']} / {r['score_stdev']}"
        print(f"| {r['iteration']} | {spread} | {r['pairs']} | {r['rating_spread']} |")
    print()
    print("| iteration | " + " | ".join(STAGES) + " |")
    print("|---" * (len(STAGES) + 1) + "|")
    for t, secs in sorted(result["stage_seconds"].items()):
        print(f"| {t} | " + " | ".join(f"{secs.get(s, 0):.1f} s" for s in STAGES) + " |")
    g = result["generate_judge_iter0"]
    print(
        f"\ngenerate judge on iteration 0's answers: {g['parsed']}/{g['requests']} parsed, {g['seconds']} s"
    )
    print(f"  it wrote, e.g.: {g['examples']}")
    for s in result["samples"]:
        print(f"\n{s['player']} ({s['prompt_match']}): {s['answer']!r}\n  match scores: {s['judge']!r}")
    if wall is not None:
        print(f"\nsmollm_tournament: whole run {wall} s (launch.py, including start-up)")
    if args.json:
        Path(args.json).write_text(json.dumps(result, indent=1) + "\n")


if __name__ == "__main__":
    main()
