"""Properties of the method that must hold for any input (hypothesis)."""

import math
from dataclasses import replace
from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from sparta_hpc.method.matchmaking import plan_matches
from sparta_hpc.method.ratings import rate_iteration
from sparta_hpc.method.settings import PlanConfig, RateConfig
from sparta_hpc.method.types import JudgedMatch, PlayerRating

PLAYERS = ["p0", "p1", "p2", "p3", "p4", "p5"]
score = st.one_of(st.none(), st.integers(0, 10).map(float), st.floats(1.0, 10.0))
judgment = st.one_of(st.none(), st.tuples(score, score))


@st.composite
def judged_matches(draw: st.DrawFn, max_matches: int = 30) -> list[JudgedMatch]:
    out = []
    for i in range(draw(st.integers(1, max_matches))):
        a, b = draw(st.permutations(PLAYERS))[:2]
        judges = draw(st.lists(st.sampled_from([p for p in PLAYERS if p not in (a, b)]), unique=True))
        out.append(
            JudgedMatch(
                match_id=f"m{i}",
                prompt=f"q{i}",
                players=(a, b),
                responses=(f"y{i}a", f"y{i}b"),
                judgments={j: draw(judgment) for j in judges},
            )
        )
    return out


@st.composite
def start_tables(draw: st.DrawFn, low_sigma: float = 0.1) -> dict[str, PlayerRating]:
    return {
        p: PlayerRating(
            rating=draw(st.floats(10.0, 500.0)),
            deviation=draw(st.floats(low_sigma, 5.0)),
            deltas=tuple(draw(st.lists(st.floats(-20, 20), max_size=12))),
        )
        for p in PLAYERS
    }


configs = st.builds(
    RateConfig,
    gain=st.sampled_from(["constant", "schedule"]),
    kappa=st.floats(0.0, 1000.0),
    failed_judgment=st.sampled_from(["exclude", "neutral"]),
    keep_deltas=st.booleans(),
    eps=st.floats(0.001, 1.0),
    window=st.integers(2, 12),
    min_margin=st.sampled_from([0.0, 0.5]),
)


@settings(max_examples=150, deadline=None)
@given(judged_matches(), start_tables(), configs)
def test_ratings_never_below_floor_and_sigma_never_below_its_floor(
    judged: list[JudgedMatch], start: dict[str, PlayerRating], cfg: RateConfig
) -> None:
    result = rate_iteration(judged, start, [], cfg, iteration=0)
    for p, r in result.ratings.items():
        assert r.rating >= cfg.floor
        assert r.deviation >= cfg.sigma_floor
        assert len(r.deltas) <= max(cfg.window, len(start[p].deltas) if cfg.keep_deltas else 0)


def spec_pairs(judged: list[JudgedMatch], final: dict[str, float], cfg: RateConfig) -> list[tuple[Any, ...]]:
    """Spec section 6 written out on its own, from the FINAL ratings and without competitor weights:
    ``(match id, chosen model, rejected model, chosen, rejected, S_chosen, S_rejected)`` per kept match."""
    out = []
    for m in judged:
        counted = []
        for judge, scores in m.judgments.items():
            if scores is None:  # crashed judge
                continue
            if None in scores:  # failed parse
                if cfg.failed_judgment == "exclude":
                    continue
                scores = (5.0, 5.0)
            counted.append((final[judge], scores))
        total = math.fsum(r for r, _ in counted)
        if total == 0:
            continue
        s = [math.fsum(r * sc[i] for r, sc in counted) / total for i in (0, 1)]
        if s[0] == s[1] or abs(s[0] - s[1]) < cfg.min_margin:
            continue
        w = 0 if s[0] > s[1] else 1
        out.append(
            (m.match_id, m.players[w], m.players[1 - w], m.responses[w], m.responses[1 - w], s[w], s[1 - w])
        )
    return out


@settings(max_examples=150, deadline=None)
@given(judged_matches(), start_tables(), configs)
def test_pairs_are_the_better_scored_response_under_the_final_ratings(
    judged: list[JudgedMatch], start: dict[str, PlayerRating], cfg: RateConfig
) -> None:
    result = rate_iteration(judged, start, [], cfg, iteration=0)
    expected = spec_pairs(judged, {p: r.rating for p, r in result.ratings.items()}, cfg)
    got = result.pairs
    keys = [(p.match_id, p.chosen_model, p.rejected_model, p.chosen, p.rejected) for p in got]
    assert keys == [e[:5] for e in expected]
    for pair, (*_, s_chosen, s_rejected) in zip(got, expected, strict=True):
        assert math.isclose(pair.score_chosen, s_chosen, rel_tol=1e-12)
        assert math.isclose(pair.score_rejected, s_rejected, rel_tol=1e-12)
        assert math.isclose(pair.margin, s_chosen - s_rejected, rel_tol=1e-9, abs_tol=1e-12)


@settings(max_examples=150, deadline=None)
@given(
    st.floats(20.0, 500.0),
    st.floats(20.0, 500.0),
    st.floats(0.1, 5.0),
    st.tuples(st.integers(0, 10), st.integers(0, 10)),
    st.floats(0.0, 1.0),
)
def test_symmetric_match_changes_sum_to_zero_with_constant_gain(
    r_a: float, r_b: float, sigma: float, scores: tuple[int, int], kappa: float
) -> None:
    """Equal deviations and the erf factor clipped to eps = 1 for both players: dR_a = -dR_b exactly in math.

    (With eps < 1 the sequential update generally breaks the symmetry: b's erf term sees a's new rating.)
    """
    start = {
        "a": PlayerRating(rating=r_a, deviation=sigma),
        "b": PlayerRating(rating=r_b, deviation=sigma),
        "j": PlayerRating(rating=100.0, deviation=0.5),
    }
    m = JudgedMatch(
        match_id="m", prompt="q", players=("a", "b"), responses=("x", "y"), judgments={"j": scores}
    )
    out = rate_iteration([m], start, [], RateConfig(kappa=kappa, eps=1.0), 0).ratings
    assert math.isclose(out["a"].rating - r_a, -(out["b"].rating - r_b), rel_tol=1e-9, abs_tol=1e-12)


@settings(max_examples=150, deadline=None)
@given(st.floats(20.0, 500.0), st.floats(0.1, 5.0), st.tuples(st.integers(0, 10), st.integers(0, 10)))
def test_equal_players_small_gap_changes_sum_to_zero(r: float, sigma: float, scores: tuple[int, int]) -> None:
    """Equal ratings and deviations, G*|D| <= sqrt(pi): both erf factors sit at eps, so dR_a = -dR_b."""
    start = {p: PlayerRating(rating=r, deviation=sigma) for p in ("a", "b")} | {
        "j": PlayerRating(rating=100.0, deviation=0.5)
    }
    kappa = min(1.0, math.sqrt(math.pi) / max(1, abs(scores[0] - scores[1])))
    m = JudgedMatch(
        match_id="m", prompt="q", players=("a", "b"), responses=("x", "y"), judgments={"j": scores}
    )
    out = rate_iteration([m], start, [], RateConfig(kappa=kappa), 0).ratings
    assert math.isclose(out["a"].rating - r, -(out["b"].rating - r), rel_tol=1e-9, abs_tol=1e-12)


@settings(max_examples=100, deadline=None)
@given(judged_matches(max_matches=15), start_tables(), configs, st.randoms(use_true_random=False))
def test_judge_order_inside_a_match_changes_nothing(
    judged: list[JudgedMatch], start: dict[str, PlayerRating], cfg: RateConfig, rnd: object
) -> None:
    shuffled = []
    for m in judged:
        items = list(m.judgments.items())
        rnd.shuffle(items)  # type: ignore[attr-defined]
        shuffled.append(replace(m, judgments=dict(items)))
    assert rate_iteration(shuffled, start, [], cfg, 0) == rate_iteration(judged, start, [], cfg, 0)


@settings(max_examples=100, deadline=None)
@given(
    st.integers(0, 2**64) | st.text(max_size=8),
    st.integers(0, 20),
    st.integers(2, 12),
    st.integers(0, 60),
    st.floats(0.0, 1.0),
    st.integers(1, 12),
)
def test_same_seed_same_schedule_and_each_player_first_once_per_block(
    seed: int | str, iteration: int, num_players: int, num_prompts: int, alpha: float, k: int
) -> None:
    players = [f"m{i}" for i in range(num_players)]
    ratings = {p: 100.0 + 3.0 * i for i, p in enumerate(players)}
    prompts = [(str(i), f"x{i}") for i in range(num_prompts)]
    cfg = PlanConfig(alpha=alpha, k=k)
    matches = plan_matches(prompts, players, ratings, cfg, seed, iteration)
    assert matches == plan_matches(prompts, players, ratings, cfg, seed, iteration)
    firsts = [m.players[0] for m in matches]
    for block in range(num_prompts // num_players):
        assert sorted(firsts[block * num_players : (block + 1) * num_players]) == sorted(players)
    assert all(a != b and b in players for a, b in (m.players for m in matches))
