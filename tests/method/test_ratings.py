"""The reputation update (spec section 5), checked against formulas written out by hand here."""

import math
import statistics
from dataclasses import replace

import pytest

from sparta_hpc.method.ratings import competitor_weights, gain, rate_iteration, score_gap
from sparta_hpc.method.settings import PROFILES, RateConfig
from sparta_hpc.method.types import JudgedMatch, PlayerRating

PAPER = RateConfig()


def released() -> RateConfig:
    return RateConfig(
        **{k.removeprefix("rate."): v for k, v in PROFILES["released"].items() if k[:5] == "rate."}
    )


def table(**ratings: float) -> dict[str, PlayerRating]:
    return {p: PlayerRating(rating=r, deviation=0.5) for p, r in ratings.items()}


def match(mid: str, a: str, b: str, **judgments: tuple[float | None, float | None] | None) -> JudgedMatch:
    return JudgedMatch(match_id=mid, prompt="q", players=(a, b), responses=("ya", "yb"), judgments=judgments)


def erf_term(r_i: float, r_j: float, s_i: float, s_j: float, eps: float = 0.01) -> float:
    return max(abs(math.erf((r_i - r_j) / math.sqrt(s_i**2 + s_j**2) / math.sqrt(2))), eps)


# --- gain ----------------------------------------------------------------------------------------------


def test_gain_schedule_spec_vectors() -> None:
    cfg = released()
    k = [gain(n, cfg) * cfg.c for n in (1, 10, 66)]
    assert k[0] == pytest.approx(9.895, abs=5e-4)
    assert k[1] == pytest.approx(9.0, abs=1e-12)
    assert k[2] == 5.0
    assert gain(1, cfg) == pytest.approx(0.4948, abs=5e-5)
    assert gain(10, cfg) == pytest.approx(0.45, abs=1e-12)
    assert gain(65, cfg) > 0.25
    assert all(gain(n, cfg) == 0.25 for n in (66, 100, 1000, 10**6))


def test_gain_constant_is_kappa_for_every_n() -> None:
    cfg = RateConfig(kappa=2.5)
    assert {gain(n, cfg) for n in (1, 2, 66, 10**5)} == {2.5}


# --- one match, by hand --------------------------------------------------------------------------------


def test_one_match_by_hand_sequential() -> None:
    start = table(a=100.0, b=100.0, j1=120.0, j2=80.0)
    m = match("m1", "a", "b", j1=(10.0, 1.0), j2=(2.0, 9.0))
    out = rate_iteration([m], start, [], PAPER, iteration=0).ratings
    d = (120 * (10 - 1) + 80 * (2 - 9)) / 200  # 2.6
    ra = 100 + 1.0 * d * math.tanh(0.5) * erf_term(100, 100, 0.5, 0.5)  # z = 0: eps binds
    rb = 100 - 1.0 * d * math.tanh(0.5) * erf_term(100, ra, 0.5, 0.5)  # b sees a's new rating
    assert out["a"].rating == pytest.approx(ra, abs=1e-12)
    assert out["b"].rating == pytest.approx(rb, abs=1e-12)
    assert erf_term(100, ra, 0.5, 0.5) > 0.01  # so the simultaneous update would differ
    assert out["b"].rating != pytest.approx(100 - (ra - 100), abs=1e-12)
    assert out["a"].deltas == pytest.approx((ra - 100,)) and out["b"].deltas == pytest.approx((rb - 100,))
    assert out["a"].deviation == 0.5 and out["b"].deviation == 0.5  # one delta: sigma unchanged
    assert out["j1"] == start["j1"] and out["j2"] == start["j2"]  # judges' ratings do not move


def test_one_match_schedule_gain_and_unequal_deviations() -> None:
    cfg = released()
    start = {
        "a": PlayerRating(rating=130.0, deviation=0.3),
        "b": PlayerRating(rating=95.0, deviation=1.7),
        "j": PlayerRating(rating=50.0, deviation=0.5),
    }
    out = rate_iteration([match("m", "a", "b", j=(3.0, 9.0))], start, [], cfg, 0).ratings
    g1 = max(5.0, 10 * 0.9 ** (1 / 10)) / 20
    ra = 130 + g1 * -6.0 * math.tanh(0.3) * erf_term(130, 95, 0.3, 1.7)
    rb = 95 + g1 * 6.0 * math.tanh(1.7) * erf_term(95, ra, 1.7, 0.3)
    assert out["a"].rating == pytest.approx(ra, abs=1e-12)
    assert out["b"].rating == pytest.approx(rb, abs=1e-12)


def test_floor_binds_and_delta_is_the_actual_change() -> None:
    start = table(a=12.0, b=100.0, j=100.0)
    cfg = RateConfig(kappa=1000.0)
    out = rate_iteration([match("m", "a", "b", j=(1.0, 10.0))], start, [], cfg, 0).ratings
    assert out["a"].rating == 10.0
    assert out["a"].deltas == (-2.0,)
    assert out["b"].rating > 100.0


def test_skipped_match_still_advances_the_gain_counter() -> None:
    cfg = released()
    start = table(a=100.0, b=100.0, j=100.0)
    crashed = match("m1", "a", "b", j=None)
    real = match("m2", "a", "b", j=(9.0, 4.0))
    result = rate_iteration([crashed, real], start, [], cfg, 0)
    assert result.num_skipped == 1 and result.num_matches == 2
    expected = 100 + gain(2, cfg) * 5.0 * math.tanh(0.5) * 0.01
    assert result.ratings["a"].rating == pytest.approx(expected, abs=1e-12)
    assert gain(2, cfg) != gain(1, cfg)


def test_delta_window_and_sigma() -> None:
    old = tuple(float(i) / 100 for i in range(10))
    start = {
        "a": PlayerRating(rating=100.0, deviation=0.5, deltas=old),
        "b": PlayerRating(rating=100.0, deviation=0.5),
        "j": PlayerRating(rating=100.0, deviation=0.5),
    }
    out = rate_iteration([match("m", "a", "b", j=(7.0, 3.0))], start, [], PAPER, 0).ratings
    new = out["a"].rating - 100.0
    assert out["a"].deltas == pytest.approx((*old[1:], new))  # window 10: the oldest delta is gone
    assert out["a"].deviation == pytest.approx(max(0.1, statistics.pstdev([*old[1:], new])), abs=1e-12)
    short = rate_iteration([match("m", "a", "b", j=(7.0, 3.0))], start, [], replace(PAPER, window=3), 0)
    assert short.ratings["a"].deltas == pytest.approx((old[8], old[9], new))


def test_sigma_floor() -> None:
    start = {
        "a": PlayerRating(rating=100.0, deviation=0.5, deltas=(0.0,)),
        "b": PlayerRating(rating=100.0, deviation=0.5, deltas=(0.0,)),
        "j": PlayerRating(rating=100.0, deviation=0.5),
    }
    out = rate_iteration([match("m", "a", "b", j=(6.0, 6.0))], start, [], PAPER, 0).ratings
    assert out["a"].deltas == (0.0, 0.0)
    assert out["a"].deviation == 0.1  # population std 0 -> floor
    out = rate_iteration([match("m", "a", "b", j=(6.0, 6.0))], start, [], replace(PAPER, sigma_floor=0.3), 0)
    assert out.ratings["b"].deviation == 0.3


def test_keep_deltas_switch() -> None:
    start = {
        "a": PlayerRating(rating=100.0, deviation=0.5, deltas=(1.0, -1.0)),
        "b": PlayerRating(rating=100.0, deviation=0.5),
        "j": PlayerRating(rating=100.0, deviation=0.5),
    }
    m = [match("m", "a", "b", j=(8.0, 2.0))]
    kept = rate_iteration(m, start, [], PAPER, 0).ratings["a"]
    reset = rate_iteration(m, start, [], replace(PAPER, keep_deltas=False), 0).ratings["a"]
    assert kept.deltas[:2] == (1.0, -1.0) and len(kept.deltas) == 3
    assert len(reset.deltas) == 1 and reset.deviation == 0.5
    assert kept.deviation == pytest.approx(statistics.pstdev(kept.deltas), abs=1e-12)


def test_failed_judgment_exclude_and_neutral() -> None:
    start = table(a=100.0, b=100.0, j1=150.0, j2=50.0, j3=70.0)
    m = match("m", "a", "b", j1=(8.0, 6.0), j2=(None, 9.0), j3=None)
    d_exclude = 2.0  # only j1 counts
    d_neutral = (150 * 2 + 50 * 0) / 200  # j2 counts as 5 vs 5 with its full weight; j3 crashed: nothing
    for mode, d in (("exclude", d_exclude), ("neutral", d_neutral)):
        result = rate_iteration([m], start, [], replace(PAPER, failed_judgment=mode), 0)
        assert result.ratings["a"].rating == pytest.approx(100 + d * math.tanh(0.5) * 0.01, abs=1e-12)
        assert result.judge_counts == {
            "j1": {"usable": 1, "failed": 0, "missing": 0},
            "j2": {"usable": 0, "failed": 1, "missing": 0},
            "j3": {"usable": 0, "failed": 0, "missing": 1},
        }
    only_failed = match("m", "a", "b", j2=(None, None))
    assert rate_iteration([only_failed], start, [], PAPER, 0).num_skipped == 1
    assert (
        rate_iteration([only_failed], start, [], replace(PAPER, failed_judgment="neutral"), 0).num_skipped
        == 0
    )


def test_score_gap_uses_competitor_weights() -> None:
    ratings = {"j1": 100.0, "j2": 300.0}
    scores = [("j1", 8.0, 6.0), ("j2", 4.0, 9.0)]
    expected = (100 * (0.3 * 8 - 1.0 * 6) + 300 * (0.3 * 4 - 1.0 * 9)) / 400
    assert score_gap(scores, ratings, 0.3, 1.0) == pytest.approx(expected, abs=1e-12)
    assert score_gap([], ratings, 1.0, 1.0) is None


# --- competitor weights --------------------------------------------------------------------------------

P = ["a", "b", "c", "d", "e"]
# end-of-iteration ratings; the lowest per iteration: h0 e, h1 c, h2 c then d, h3 a, h4 e, h5 b, h6 d
H = [
    {"a": 100, "b": 100, "c": 100, "d": 100, "e": 99},
    {"a": 101, "b": 102, "c": 90, "d": 95, "e": 105},
    {"a": 101, "b": 102, "c": 80, "d": 85, "e": 105},
    {"a": 70, "b": 102, "c": 80, "d": 85, "e": 105},
    {"a": 70, "b": 102, "c": 80, "d": 85, "e": 60},
    {"a": 70, "b": 50, "c": 80, "d": 85, "e": 60},
    {"a": 70, "b": 50, "c": 80, "d": 40, "e": 60},
    {"a": 1, "b": 2, "c": 3, "d": 4, "e": 5},  # end of 7: never used (t >= 8 reuses t = 7)
]


def test_normal_weights_are_one() -> None:
    assert competitor_weights(P, [], "normal", 5) == dict.fromkeys(P, 1.0)


@pytest.mark.parametrize(
    ("t", "expected"),
    [
        (0, {}),
        (1, {}),
        (2, {"c": 0.0}),  # lowest at the end of iteration 1
        (3, {"c": 0.0, "d": 0.1}),  # end of 2: c is listed already, d next
        (4, {"c": 0.0, "d": 0.1, "a": 0.2}),
        (5, {"c": 0.0, "d": 0.1, "a": 0.2, "e": 0.1 * 3}),
        (7, {"c": 0.0, "d": 0.1, "a": 0.2, "e": 0.1 * 3, "b": 0.1 * 4}),  # end of 6: d listed, all but b
        (8, {"c": 0.0, "d": 0.1, "a": 0.2, "e": 0.1 * 3, "b": 0.1 * 4}),
        (12, {"c": 0.0, "d": 0.1, "a": 0.2, "e": 0.1 * 3, "b": 0.1 * 4}),
    ],
)
def test_static_weights(t: int, expected: dict[str, float]) -> None:
    assert competitor_weights(P, H[: max(t, 1)] if t < 8 else H, "static", t) == {
        p: expected.get(p, 1.0) for p in P
    }


@pytest.mark.parametrize(
    ("t", "expected"),
    [
        (1, {}),
        (2, {"c": 0.0}),  # 1 lowest of end-of-1
        (3, {"c": 0.0, "d": 0.1}),  # 2 lowest of end-of-2
        (4, {"a": 0.0, "c": 0.1, "d": 0.2}),
        (7, {"d": 0.0, "b": 0.1, "e": 0.2, "a": 0.1 * 3, "c": 0.1 * 4}),  # 6 lowest of 5 players: all
        (9, {"d": 0.0, "b": 0.1, "e": 0.2, "a": 0.1 * 3, "c": 0.1 * 4}),
    ],
)
def test_dynamic_weights(t: int, expected: dict[str, float]) -> None:
    assert competitor_weights(P, H, "dynamic", t) == {p: expected.get(p, 1.0) for p in P}


def test_weight_ties_keep_player_order() -> None:
    flat = [dict.fromkeys(P, 100.0)] * 3
    assert competitor_weights(P, flat, "dynamic", 3) == {"a": 0.0, "b": 0.1, "c": 1.0, "d": 1.0, "e": 1.0}
    assert competitor_weights(P, flat, "static", 3) == {"a": 0.0, "b": 0.1, "c": 1.0, "d": 1.0, "e": 1.0}


def test_weights_need_enough_history() -> None:
    with pytest.raises(ValueError, match="needs the end-of-iteration ratings"):
        competitor_weights(P, H[:2], "static", 3)
    with pytest.raises(ValueError, match="needs the end-of-iteration ratings"):
        competitor_weights(P, H[:6], "dynamic", 11)
    with pytest.raises(ValueError, match="no rating"):
        competitor_weights(P, [H[0], {"a": 1.0}], "static", 2)
    assert competitor_weights(P, [], "static", 1) == dict.fromkeys(P, 1.0)


def test_weights_enter_the_update() -> None:
    start = table(a=100.0, b=100.0, c=100.0, d=100.0, e=100.0)
    m = match("m", "c", "a", e=(6.0, 6.0))
    # static at t = 2: c (lowest at end of 1) has w = 0, so D = (0 * 6 - 1 * 6) = -6 although both scored 6
    out = rate_iteration([m], start, H, replace(PAPER, weights="static"), iteration=2).ratings
    assert out["c"].rating == pytest.approx(100 - 6 * math.tanh(0.5) * 0.01, abs=1e-12)
    assert rate_iteration([m], start, H, PAPER, iteration=2).ratings["c"].rating == 100.0


def test_unknown_names_are_rejected() -> None:
    start = table(a=100.0, b=100.0, j=100.0)
    with pytest.raises(ValueError, match="no rating for \\['x'\\]"):
        rate_iteration([match("m", "a", "b", x=(1.0, 2.0))], start, [], PAPER, 0)
    with pytest.raises(ValueError, match="no rating for \\['z'\\]"):
        rate_iteration([match("m", "a", "z", j=(1.0, 2.0))], start, [], PAPER, 0)


def test_report_form() -> None:
    start = table(a=100.0, b=100.0, j=100.0)
    result = rate_iteration([match("m", "a", "b", j=(9.0, 2.0))], start, [], PAPER, 0)
    assert result.report() == {
        "num_pairs": 1,
        "num_matches": 1,
        "num_skipped": 0,
        "weights": {"a": 1.0, "b": 1.0, "j": 1.0},
        "judge_counts": {"j": {"usable": 1, "failed": 0, "missing": 0}},
    }


def test_uniform_aggregation_by_hand() -> None:
    # j1 (R 120) prefers a, j2 (R 20) prefers b more strongly: reputation and plain mean disagree on the sign
    start = table(a=100.0, b=100.0, j1=120.0, j2=20.0)
    m = match("m1", "a", "b", j1=(6.0, 4.0), j2=(1.0, 9.0))
    rep = rate_iteration([m], start, [], PAPER, iteration=0)
    uni = rate_iteration([m], start, [], replace(PAPER, aggregation="uniform"), iteration=0)
    d_rep = (120 * 2 + 20 * -8) / 140  # +0.571: a gains
    d_uni = (2 + -8) / 2  # -3: a loses
    step = math.tanh(0.5) * erf_term(100, 100, 0.5, 0.5)
    assert rep.ratings["a"].rating == pytest.approx(100 + d_rep * step, abs=1e-12)
    assert uni.ratings["a"].rating == pytest.approx(100 + d_uni * step, abs=1e-12)
    assert [p.chosen_model for p in rep.pairs] == ["a"] and [p.chosen_model for p in uni.pairs] == ["b"]
    assert uni.pairs[0].score_chosen == pytest.approx(6.5) and uni.pairs[0].margin == pytest.approx(-d_uni)


def test_uniform_aggregation_with_failed_judgments() -> None:
    start = table(a=100.0, b=100.0, j1=500.0, j2=10.0)
    m = match("m1", "a", "b", j1=(8.0, 4.0), j2=(None, 7.0))
    neutral = replace(PAPER, aggregation="uniform", failed_judgment="neutral", keep_deltas=False)
    out = rate_iteration([m], start, [], neutral, iteration=0)
    d = ((8 - 4) + (5 - 5)) / 2  # the failed judgment counts 5 vs 5 with weight 1, like any judge
    step = math.tanh(0.5) * erf_term(100, 100, 0.5, 0.5)
    assert out.ratings["a"].rating == pytest.approx(100 + d * step, abs=1e-12)
    excluded = rate_iteration([m], start, [], replace(neutral, failed_judgment="exclude"), iteration=0)
    assert excluded.ratings["a"].rating == pytest.approx(100 + 4 * step, abs=1e-12)


def test_uniform_equals_reputation_when_judges_are_rated_alike() -> None:
    start = table(a=104.0, b=97.0, c=100.0, j1=100.0, j2=100.0)
    ms = [
        match(f"m{i}", *pair, j1=(i % 10, 7.0), j2=(3.0, (i * 3) % 11))
        for i, pair in enumerate([("a", "b"), ("b", "c"), ("c", "a")] * 5)
    ]
    rep = rate_iteration(ms, start, [], PAPER, iteration=0)
    uni = rate_iteration(ms, start, [], replace(PAPER, aggregation="uniform"), iteration=0)
    assert {p: r.rating for p, r in uni.ratings.items()} == pytest.approx(
        {p: r.rating for p, r in rep.ratings.items()}, abs=1e-9
    )


def test_released_profile_keeps_reputation_weights() -> None:
    assert released().aggregation == "reputation" and PAPER.aggregation == "reputation"
    with pytest.raises(ValueError, match="rate.aggregation='mean' is not valid"):
        RateConfig(aggregation="mean")
