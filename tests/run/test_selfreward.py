"""The self-rewarding baseline: best vs worst selection, and a demo-scale run through the inline backend."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from sparta_hpc.errors import ConfigError
from sparta_hpc.method.types import Match
from sparta_hpc.run.selfreward import select_pair, self_matches

ROOT = Path(__file__).resolve().parents[2]
MATCH = Match(match_id="t000-s000003", iteration=0, index=3, prompt_id="p", prompt="Q?", players=("a", "a"))


def test_best_vs_worst_with_earliest_answer_winning_ties() -> None:
    pair, outcome = select_pair(MATCH, ["w", "x", "y", "z"], [4.0, 7.0, 7.0, 4.0])
    assert outcome == "pair" and pair is not None
    assert (pair.chosen, pair.rejected, pair.margin) == ("x", "w", 3.0)
    assert (pair.chosen_model, pair.rejected_model, pair.match_id) == ("a", "a", "t000-s000003")
    assert (pair.score_chosen, pair.score_rejected, pair.prompt) == (7.0, 4.0, "Q?")


def test_failed_judgments_are_left_out() -> None:
    pair, outcome = select_pair(MATCH, ["w", "x", "y", "z"], [None, 2.0, None, 9.0])
    assert outcome == "pair" and pair is not None and (pair.chosen, pair.rejected) == ("z", "x")
    assert select_pair(MATCH, ["w", "x", "y", "z"], [None, 2.0, None, None]) == (None, "unusable")
    assert select_pair(MATCH, ["w", "x"], [None, None]) == (None, "unusable")


def test_ties_and_identical_answers_give_no_pair() -> None:
    assert select_pair(MATCH, ["w", "x", "y"], [5.0, 5.0, None]) == (None, "tie")
    assert select_pair(MATCH, ["same", "other", "same"], [8.0, 5.0, 1.0]) == (None, "identical")


def test_self_matches_one_per_prompt_and_player() -> None:
    matches = self_matches([("p1", "A"), ("p2", "B")], ["x", "y", "z"], 2)
    assert [(m.match_id, m.prompt_id, m.players) for m in matches[:4]] == [
        ("t002-s000000", "p1", ("x", "x")),
        ("t002-s000001", "p1", ("y", "y")),
        ("t002-s000002", "p1", ("z", "z")),
        ("t002-s000003", "p2", ("x", "x")),
    ]
    assert [m.index for m in matches] == list(range(6))


def test_mode_and_num_samples_are_checked() -> None:
    from sparta_hpc.config.schema import RunConfig, SelfRewardConfig

    with pytest.raises(ConfigError, match="run.mode"):
        RunConfig(mode="selfish")
    with pytest.raises(ConfigError, match="num_samples"):
        SelfRewardConfig(num_samples=1)


# ---------------------------------------------------------------- a demo-scale run (tiny models, inline)

DEMO = [
    "run.mode=self_rewarding",
    "run.iterations=1",
    "plan.num_prompts=4",
    "generate.max_new_tokens=8",
    "train.max_length=64",
    "eval.every=0",
    "judge.method=logprob",  # tiny random models rarely write a parsable score: continuous judgments
    "generate.chunk_size=4",
    "judge.chunk_size=8",
]
RECORD_GLOBS = (
    "iter_*/plan/*.json*",
    "iter_*/*/shard_*.jsonl",
    "iter_*/rate/*.json*",
    "iter_*/rate/*/*.jsonl",
)


def _run(*args: str) -> str:
    env = {"HF_HUB_OFFLINE": "1", "TOKENIZERS_PARALLELISM": "false"}
    proc = subprocess.run(
        [sys.executable, *args],
        cwd=ROOT,
        env={**os.environ, **env},
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert proc.returncode == 0, (proc.stdout + proc.stderr)[-3000:]
    return proc.stdout + proc.stderr


def _records(run_dir: Path) -> dict[str, bytes]:
    files = sorted({p for g in RECORD_GLOBS for p in run_dir.glob(g) if not p.name.startswith(".")})
    return {str(p.relative_to(run_dir)): p.read_bytes() for p in files if p.name != "players.json"}


@pytest.mark.slow
def test_self_rewarding_run_trains_each_player_on_its_own_pairs(tmp_path: Path) -> None:
    runs = [tmp_path / "a", tmp_path / "b"]
    for run_dir in runs:
        out = _run(str(ROOT / "launch.py"), "--cluster", "inline", "--run-dir", str(run_dir), *DEMO)
        assert "ratings unchanged (self_rewarding)" in out
    first, second = _records(runs[0]), _records(runs[1])
    assert first == second, "two runs of the same config gave different records"
    run_dir = runs[0]
    players = sorted(json.loads((run_dir / "iter_000/plan/players.json").read_text()))
    matches = (run_dir / "iter_000/plan/matches.jsonl").read_text().splitlines()
    assert len(matches) == 4 * len(players)
    assert len((run_dir / "iter_000/generate/shard_00000.jsonl").read_text().splitlines()) == 4 * len(matches)
    report = json.loads((run_dir / "iter_000/rate/report.json").read_text())
    assert report["mode"] == "self_rewarding" and report["num_pairs"] > 0
    assert not (run_dir / "iter_000/rate/judged.jsonl").exists()
    assert not (run_dir / "iter_000/rate/preferences.jsonl").exists()
    for p in players:
        pairs = [
            json.loads(x) for x in (run_dir / f"iter_000/rate/preferences/{p}.jsonl").read_text().splitlines()
        ]
        assert len(pairs) == report["pairs_per_player"][p]
        assert all(x["chosen_model"] == x["rejected_model"] == p and x["margin"] > 0 for x in pairs)
        assert sum(report["outcomes"][p].values()) == 4
        if pairs:
            stats = json.loads((run_dir / f"iter_000/train/{p}/stats.json").read_text())
            assert stats["num_pairs"] == len(pairs)
            assert (run_dir / f"iter_000/train/{p}/adapter").is_dir()
    ratings = json.loads((run_dir / "iter_000/rate/ratings.json").read_text())
    assert len({(r["rating"], r["deviation"]) for r in ratings.values()}) == 1, "ratings must stay initial"
    status = json.loads(_run("-m", "sparta_hpc.cli", "status", str(run_dir), "--json"))
    assert status["done"] is True and status["mode"] == "self_rewarding"
    assert "no reputation" in _run("-m", "sparta_hpc.cli", "status", str(run_dir))
    _run("-m", "sparta_hpc.cli", "report", str(run_dir))
    assert (run_dir / "report/report.html").exists()
