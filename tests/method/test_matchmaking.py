"""Prompt sampling and match-making (spec sections 2.1 and 3)."""

import hashlib
import json
import os
import subprocess
import sys
from collections import Counter

import pytest

from sparta_hpc.method.matchmaking import plan_matches, sample_prompts
from sparta_hpc.method.settings import PROFILES, PlanConfig
from sparta_hpc.method.types import Match

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


def plan_config(profile: str, **overrides: object) -> PlanConfig:
    keys = {k.removeprefix("plan."): v for k, v in PROFILES[profile].items() if k.startswith("plan.")}
    return PlanConfig(**(keys | overrides))  # type: ignore[arg-type]


def three_iterations(cfg: PlanConfig, pool_size: int = 500, num_prompts: int = 37) -> list[list[Match]]:
    """Ten players whose ratings change between iterations, as a run's do; seed 1234."""
    players = [f"p{i}" for i in range(10)]
    pool = [(f"id{i}", f"prompt {i}") for i in range(pool_size)]
    out = []
    for t in range(3):
        ratings = {p: 100.0 + ((i * 7 + t * 3) % 11) - 5.0 * t * (i % 2) for i, p in enumerate(players)}
        chosen = sample_prompts(len(pool), num_prompts, 1234, t, cfg.prompts)
        out.append(plan_matches([pool[i] for i in chosen], players, ratings, cfg, seed=1234, iteration=t))
    return out


def test_paper_profile_plans_the_same_matches_as_before_the_schedule_and_pairing_keys() -> None:
    # Recorded from the code before plan.schedule and plan.pairing existed (commit 250d698): adding them must
    # not change a single paper-profile match. If this fails, paper runs would no longer reproduce.
    matches = three_iterations(plan_config("paper"))
    text = json.dumps([[m.to_dict() for m in ms] for ms in matches], sort_keys=True)
    assert hashlib.sha256(text.encode()).hexdigest() == (
        "94b548edd66784113d177fbe829758abb45166d9da44b06b887bff1c08dace1e"
    )
    assert [m.players for m in matches[1][:5]] == [
        ("p8", "p5"),
        ("p1", "p0"),
        ("p2", "p3"),
        ("p5", "p1"),
        ("p0", "p2"),
    ]


def firsts_by_prompt(matches: list[Match]) -> list[tuple[str, str]]:
    return [(m.prompt_id, m.players[0]) for m in matches]


def test_released_profile_repeats_prompts_and_first_players_every_iteration() -> None:
    cfg = plan_config("released")
    assert (cfg.prompts, cfg.schedule) == ("fixed", "fixed")
    t0, t1, t2 = three_iterations(cfg)
    assert firsts_by_prompt(t0) == firsts_by_prompt(t1) == firsts_by_prompt(t2)
    # the ratings differ between iterations, so some nearest-k opponents differ, never the first players
    assert [m.players for m in t0] != [m.players for m in t1]
    # iteration 0 is the draw every later iteration replays: the same as the resampling schedule's iteration 0
    resampled = three_iterations(plan_config("released", schedule="resample"))
    assert firsts_by_prompt(resampled[0]) == firsts_by_prompt(t0)
    # plan.prompts=fixed alone repeats the prompts but draws a new schedule each iteration
    assert [m.prompt_id for m in resampled[1]] == [m.prompt_id for m in t0]
    assert firsts_by_prompt(resampled[1]) != firsts_by_prompt(resampled[0])


def test_fixed_schedule_repeats_every_uniform_opponent() -> None:
    for cfg in (PlanConfig(schedule="fixed", alpha=1.0), PlanConfig(schedule="fixed", pairing="random")):
        t0, t1, t2 = three_iterations(cfg)
        assert [m.players for m in t0] == [m.players for m in t1] == [m.players for m in t2]
        assert [m.prompt_id for m in t0] != [m.prompt_id for m in t1]  # prompts=resample: new prompts


def test_fixed_schedule_nearest_opponent_follows_the_ratings() -> None:
    cfg = PlanConfig(schedule="fixed", alpha=0.0, k=1)
    before = {"p0": 100.0, "p1": 101.0, "p2": 120.0, "p3": 80.0}
    after = {"p0": 100.0, "p1": 130.0, "p2": 99.0, "p3": 80.0}  # p0's nearest: p1, then p2
    plans = [plan_matches(prompts(8), list(before), r, cfg, 3, t) for t, r in ((0, before), (5, after))]
    assert [m.players[0] for m in plans[0]] == [m.players[0] for m in plans[1]]
    assert {m.players[1] for m in plans[0] if m.players[0] == "p0"} == {"p1"}
    assert {m.players[1] for m in plans[1] if m.players[0] == "p0"} == {"p2"}
    assert [m.match_id for m in plans[1]][:1] == ["t005-m000000"]


def test_random_pairing_ignores_ratings_and_equals_alpha_one() -> None:
    cfg = PlanConfig(pairing="random", alpha=0.0, k=1)  # alpha and k no longer matter
    few = [m.players for m in plan_matches(prompts(100), PLAYERS, RATINGS, cfg, seed=11, iteration=0)]
    again = [m.players for m in plan_matches(prompts(100), PLAYERS, RATINGS, cfg, seed=11, iteration=0)]
    alpha_one = plan_matches(prompts(100), PLAYERS, RATINGS, PlanConfig(alpha=1.0), seed=11, iteration=0)
    same = few == again == [m.players for m in alpha_one]  # a bool: pytest's diff of long lists is slow
    assert same
    many = plan_matches(prompts(20000), PLAYERS, RATINGS, cfg, seed=11, iteration=0)
    counts = Counter(m.players[1] for m in many if m.players[0] == "p0")
    assert set(counts) == {"p1", "p2", "p3", "p4"}
    assert max(counts.values()) / min(counts.values()) < 1.25  # with reputation pairing p1 would dominate
    reputation = plan_matches(prompts(2000), PLAYERS, RATINGS, PlanConfig(alpha=0.0, k=1), 11, 0)
    assert {m.players[1] for m in reputation if m.players[0] == "p0"} == {"p1"}


@pytest.mark.parametrize(("key", "value"), [("prompts", "once"), ("schedule", "frozen"), ("pairing", "elo")])
def test_plan_choices_are_checked(key: str, value: str) -> None:
    with pytest.raises(ValueError, match=f"plan.{key}={value!r} is not valid"):
        PlanConfig(**{key: value})  # type: ignore[arg-type]
