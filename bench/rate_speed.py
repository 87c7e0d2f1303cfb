"""Time ``sparta-hpc rate`` on a generated file of judged matches and print the time per 1,000 matches.

    python bench/rate_speed.py [--num-matches 10000] [--num-players 10] [--profile released]

Writes judged.jsonl, start.json and history.json (for the released profile's static weights) into a temporary
directory, runs ``python -m sparta_hpc.tools.rescore`` on them as a separate process (start-up included),
and prints the wall time. Every player judges every match it does not play; 3% of judgments fail to parse,
1% crash.
"""

from __future__ import annotations

import argparse
import json
import random
import subprocess
import sys
import tempfile
import time
from pathlib import Path


def generate(folder: Path, num_matches: int, num_players: int, seed: int = 0) -> list[str]:
    """Write the inputs and return the command-line arguments that point at them."""
    rng = random.Random(seed)
    players = [f"player{i}" for i in range(num_players)]
    with open(folder / "judged.jsonl", "w", encoding="utf-8") as f:
        for i in range(num_matches):
            a, b = rng.sample(players, 2)
            judgments: dict[str, list[int | None] | None] = {}
            for judge in players:
                if judge in (a, b):
                    continue
                u = rng.random()
                scores = [rng.randint(1, 10), rng.randint(1, 10)]
                judgments[judge] = None if u < 0.01 else [None, scores[1]] if u < 0.04 else scores
            record = {
                "match_id": f"m{i:06d}",
                "prompt": f"Question {i}: " + "lorem ipsum " * 20,
                "players": [a, b],
                "responses": [f"Answer of {a}: " + "dolor sit " * 60, f"Answer of {b}: " + "amet " * 80],
                "judgments": judgments,
            }
            f.write(json.dumps(record) + "\n")
    start = {p: {"rating": 100.0, "deviation": 0.5, "deltas": []} for p in players}
    (folder / "start.json").write_text(json.dumps(start))
    history = [{p: 100.0 + rng.uniform(-5, 5) for p in players} for _ in range(3)]
    (folder / "history.json").write_text(json.dumps(history))
    return [
        "--matches", str(folder / "judged.jsonl"),
        "--ratings", str(folder / "start.json"),
        "--history", str(folder / "history.json"),
        "--iteration", "3",
        "--out", str(folder / "out"),
    ]  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--num-matches", type=int, default=10_000)
    parser.add_argument("--num-players", type=int, default=10)
    parser.add_argument("--profile", default="released", choices=["paper", "released"])
    parser.add_argument("--repeats", type=int, default=3, help="report the fastest of this many runs")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        argv = generate(Path(tmp), args.num_matches, args.num_players)
        size_mb = (Path(tmp) / "judged.jsonl").stat().st_size / 1e6
        cmd = [sys.executable, "-m", "sparta_hpc.tools.rescore", *argv, "--profile", args.profile]
        times = []
        for _ in range(args.repeats):
            t0 = time.perf_counter()
            subprocess.run(cmd, check=True, stdout=subprocess.DEVNULL)
            times.append(time.perf_counter() - t0)
        best = min(times)
    print(
        f"sparta-hpc rate: {args.num_matches} matches ({size_mb:.1f} MB, {args.num_players} players, "
        f"profile {args.profile}) in {best:.3f} s = {1000 * best / args.num_matches:.3f} s per 1,000 matches"
    )


if __name__ == "__main__":
    main()
