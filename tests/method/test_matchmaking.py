"""Prompt sampling and match-making (spec sections 2.1 and 3)."""

import json
import os
import subprocess
import sys
from collections import Counter

import pytest

from sparta_hpc.method.matchmaking import plan_matches, sample_prompts
from sparta_hpc.method.settings import PlanConfig

PLAYERS = ["p0", "p1", "p2", "p3", "p4"]
RATINGS = {"p0": 100.0, "p1": 101.0, "p2": 103.0, "p3": 110.0, "p4": 90.0}


def prompts(n: int) -> list[tuple[str, str]]:
    return [(f"id{i}", f"prompt {i}") for i in range(n)]


def test_same_seed_same_matches_other_seed_other_matches() -> None:
    cfg = PlanConfig()
    one = plan_matches(prompts(53), PLAYERS, RATINGS, cfg, seed=7, iteration=2)
    assert one == plan_matches(prompts(53), PLAYERS, RATINGS, cfg, seed=7, iteration=2)
    assert one != plan_matches(prompts(53), PLAYERS, RATINGS, cfg, seed=8, iteration=2)
    assert one != plan_matches(prompts(53), PLAYERS, RATINGS, cfg, seed=7, iteration=3)


def test_schedule_is_stable_across_processes() -> None:
    code = (
        "import json; from sparta_hpc.method.matchmaking import plan_matches; "
        "from sparta_hpc.method.settings import PlanConfig; "
        f"ms = plan_matches({prompts(23)!r}, {PLAYERS!r}, {RATINGS!r}, PlanConfig(), 'run-a', 1); "
        "print(json.dumps([m.to_dict() for m in ms]))"
    )
    outputs = []
    for hashseed in ("1", "2"):
        env = {**os.environ, "PYTHONHASHSEED": hashseed}
        run = subprocess.run(
            [sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True
        )
        outputs.append(json.loads(run.stdout))
    here = [m.to_dict() for m in plan_matches(prompts(23), PLAYERS, RATINGS, PlanConfig(), "run-a", 1)]
    assert outputs[0] == outputs[1] == here


@pytest.mark.parametrize("num_prompts", [5, 23, 50, 3])
def test_every_player_is_first_once_per_block(num_prompts: int) -> None:
    matches = plan_matches(prompts(num_prompts), PLAYERS, RATINGS, PlanConfig(), seed=1, iteration=0)
    firsts = [m.players[0] for m in matches]
    m = len(PLAYERS)
    for start in range(0, num_prompts - num_prompts % m, m):
        assert sorted(firsts[start : start + m]) == sorted(PLAYERS)
    assert all(f in PLAYERS for f in firsts[num_prompts - num_prompts % m :])


def test_matches_keep_prompt_order_and_ids() -> None:
    matches = plan_matches(prompts(12), PLAYERS, RATINGS, PlanConfig(), seed=3, iteration=4)
    assert [m.prompt_id for m in matches] == [f"id{i}" for i in range(12)]
    assert [m.index for m in matches] == list(range(12))
    assert all(m.iteration == 4 and m.prompt == f"prompt {m.index}" for m in matches)
    assert len({m.match_id for m in matches}) == 12
    assert all(a != b for a, b in (m.players for m in matches))


def test_alpha_zero_k_one_picks_the_nearest_in_rating() -> None:
    nearest = {"p0": "p1", "p1": "p0", "p2": "p1", "p3": "p2", "p4": "p0"}
    cfg = PlanConfig(alpha=0.0, k=1)
    for m in plan_matches(prompts(40), PLAYERS, RATINGS, cfg, seed=5, iteration=0):
        assert m.players[1] == nearest[m.players[0]]


def test_alpha_zero_picks_only_among_k_nearest() -> None:
    # distances from p0: p1 1, p2 3, p4 10, p3 10 (tie: p3 comes first in the player order)
    cfg = PlanConfig(alpha=0.0, k=3)
    seen = Counter(
        m.players[1]
        for m in plan_matches(prompts(2000), PLAYERS, RATINGS, cfg, seed=5, iteration=0)
        if m.players[0] == "p0"
    )
    assert set(seen) == {"p1", "p2", "p3"}


def test_equal_ratings_keep_player_order() -> None:
    flat = dict.fromkeys(PLAYERS, 100.0)
    cfg = PlanConfig(alpha=0.0, k=1)
    for m in plan_matches(prompts(20), PLAYERS, flat, cfg, seed=9, iteration=0):
        assert m.players[1] == ("p1" if m.players[0] == "p0" else "p0")


def test_alpha_is_the_probability_of_a_uniform_opponent() -> None:
    # k = 1: P(nearest) = (1 - alpha) + alpha / (m - 1) = 0.4 + 0.6 / 4 = 0.55
    cfg = PlanConfig(alpha=0.6, k=1)
    nearest = {"p0": "p1", "p1": "p0", "p2": "p1", "p3": "p2", "p4": "p0"}
    matches = plan_matches(prompts(20000), PLAYERS, RATINGS, cfg, seed=11, iteration=0)
    share = sum(m.players[1] == nearest[m.players[0]] for m in matches) / len(matches)
    assert abs(share - 0.55) < 0.02
    uniform = plan_matches(prompts(20000), PLAYERS, RATINGS, PlanConfig(alpha=1.0), seed=11, iteration=0)
    counts = Counter(m.players[1] for m in uniform if m.players[0] == "p0")
    assert set(counts) == {"p1", "p2", "p3", "p4"}
    assert max(counts.values()) / min(counts.values()) < 1.25


def test_plan_matches_rejects_bad_players() -> None:
    with pytest.raises(ValueError, match="distinct players"):
        plan_matches(prompts(3), ["p0"], RATINGS, PlanConfig(), seed=1, iteration=0)
    with pytest.raises(ValueError, match="distinct players"):
        plan_matches(prompts(3), ["p0", "p0"], RATINGS, PlanConfig(), seed=1, iteration=0)
    with pytest.raises(ValueError, match="all rated"):
        plan_matches(prompts(3), ["p0", "zz"], RATINGS, PlanConfig(), seed=1, iteration=0)


def test_sample_prompts_fixed_and_resample() -> None:
    fixed = [sample_prompts(1000, 50, 42, t, "fixed") for t in range(3)]
    assert fixed[0] == fixed[1] == fixed[2]
    fresh = [sample_prompts(1000, 50, 42, t, "resample") for t in range(3)]
    assert fresh[0] != fresh[1] != fresh[2]
    for sample in fixed + fresh:
        assert len(sample) == 50 and len(set(sample)) == 50 and all(0 <= i < 1000 for i in sample)
    assert sample_prompts(1000, 50, 43, 0, "fixed") != fixed[0]
    small = sample_prompts(7, 50, 42, 0, "resample")
    assert sorted(small) == list(range(7))
    with pytest.raises(ValueError, match="plan.prompts"):
        sample_prompts(10, 5, 42, 0, "sometimes")
