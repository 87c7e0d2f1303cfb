"""Preference pairs (spec section 6)."""

from dataclasses import replace

import pytest

from sparta_hpc.method.preferences import aggregate_scores, judge_weights, preference_pair, preference_pairs
from sparta_hpc.method.ratings import rate_iteration
from sparta_hpc.method.settings import RateConfig
from sparta_hpc.method.types import JudgedMatch, PlayerRating

CFG = RateConfig()
R = {"j1": 120.0, "j2": 40.0, "j3": 10.0}


def match(mid: str, **judgments: tuple[float | None, float | None] | None) -> JudgedMatch:
    return JudgedMatch(
        match_id=mid,
        prompt=f"prompt {mid}",
        players=("a", "b"),
        responses=("resp a", "resp b"),
        judgments=judgments,
    )


def test_rating_weighted_scores_choose_and_record() -> None:
    # j1 prefers b slightly, j2 prefers a strongly:
    # S_a = (120*6 + 40*10)/160 = 7.0, S_b = (120*7 + 40*2)/160 = 5.75
    pair = preference_pair(match("m1", j1=(6.0, 7.0), j2=(10.0, 2.0)), R, CFG)
    assert pair is not None
    assert (pair.chosen_model, pair.rejected_model, pair.chosen, pair.rejected) == (
        "a",
        "b",
        "resp a",
        "resp b",
    )
    assert pair.score_chosen == pytest.approx(7.0) and pair.score_rejected == pytest.approx(5.75)
    assert pair.margin == pytest.approx(1.25)
    assert (pair.match_id, pair.prompt) == ("m1", "prompt m1")
    # with j2 weighted low, j1's preference for b wins
    flipped = preference_pair(match("m1", j1=(6.0, 7.0), j2=(10.0, 2.0)), {"j1": 120.0, "j2": 10.0}, CFG)
    assert flipped is not None and flipped.chosen_model == "b" and flipped.chosen == "resp b"
    assert flipped.margin == pytest.approx((120 * 7 + 10 * 2 - 120 * 6 - 10 * 10) / 130)


def test_exact_tie_and_zero_weight_are_dropped() -> None:
    # opposite preferences of equally rated judges cancel exactly: S_a = S_b = 4
    assert preference_pair(match("t", j1=(6.0, 4.0), j3=(2.0, 4.0)), {"j1": 10.0, "j3": 10.0}, CFG) is None
    assert preference_pair(match("t", j1=(7.0, 7.0), j2=(3.0, 3.0)), R, CFG) is None
    assert preference_pair(match("z"), R, CFG) is None
    assert preference_pair(match("z", j1=None), R, CFG) is None
    assert preference_pair(match("z", j1=(None, 4.0)), R, CFG) is None


def test_failed_judgment_switch_in_pairs() -> None:
    m = match("f", j1=(8.0, 6.0), j2=(None, 3.0))
    excluded = preference_pair(m, R, CFG)
    neutral = preference_pair(m, R, replace(CFG, failed_judgment="neutral"))
    assert excluded is not None and excluded.score_chosen == pytest.approx(8.0)
    assert neutral is not None and neutral.score_chosen == pytest.approx((120 * 8 + 40 * 5) / 160)
    assert neutral.score_rejected == pytest.approx((120 * 6 + 40 * 5) / 160)


def test_min_margin() -> None:
    m = match("mm", j1=(7.0, 6.0))  # margin 1.0
    assert preference_pair(m, R, replace(CFG, min_margin=1.0)) is not None
    assert preference_pair(m, R, replace(CFG, min_margin=1.0001)) is None


def test_pairs_keep_match_order_and_skip_dropped() -> None:
    ms = [match("x", j1=(1.0, 9.0)), match("y", j1=(5.0, 5.0)), match("z", j2=(9.0, 1.0))]
    assert [p.match_id for p in preference_pairs(ms, R, CFG)] == ["x", "z"]


def test_pairs_use_final_ratings_and_no_competitor_weights() -> None:
    start = {p: PlayerRating(rating=100.0, deviation=0.5) for p in ("a", "b", "c", "j1", "j2")}
    history = [{p: 100.0 for p in start}, {"a": 50.0, "b": 60.0, "c": 70.0, "j1": 80.0, "j2": 90.0}]
    ms = [
        JudgedMatch(
            match_id="1", prompt="p", players=("j1", "c"), responses=("x", "y"), judgments={"j2": (9.0, 1.0)}
        ),
        JudgedMatch(
            match_id="2",
            prompt="p",
            players=("a", "b"),
            responses=("ya", "yb"),
            judgments={"j1": (8.0, 6.0), "j2": (5.0, 7.0)},
        ),
    ]
    result = rate_iteration(ms, start, history, replace(CFG, weights="static"), iteration=2)
    assert result.weights["a"] == 0.0  # a's competitor weight is 0, yet the pair below ignores it
    r = {p: result.ratings[p].rating for p in start}
    assert r["j1"] > 100.0  # j1 won match 1, so its judge weight changed before pairs are made
    pair = result.pairs[1]
    s_a = (r["j1"] * 8 + r["j2"] * 5) / (r["j1"] + r["j2"])
    s_b = (r["j1"] * 6 + r["j2"] * 7) / (r["j1"] + r["j2"])
    assert pair.chosen_model == "a" and pair.score_chosen == pytest.approx(s_a, abs=1e-12)
    assert pair.score_rejected == pytest.approx(s_b, abs=1e-12)


def test_uniform_aggregation_is_the_plain_mean_of_the_counted_judges() -> None:
    m = match("u", j1=(6.0, 7.0), j2=(10.0, 2.0), j3=None)
    pair = preference_pair(m, R, replace(CFG, aggregation="uniform"))
    # reputation: S_a = 7.0, S_b = 5.75 (above); plain mean: S_a = 8.0, S_b = 4.5
    assert pair is not None and pair.chosen_model == "a"
    assert (pair.score_chosen, pair.score_rejected) == (pytest.approx(8.0), pytest.approx(4.5))
    assert aggregate_scores(m, R, "exclude", "uniform") == (8.0, 4.5)
    assert aggregate_scores(m, R, "exclude") == (pytest.approx(7.0), pytest.approx(5.75))
    # the choice flips where a low-rated judge outvotes a high-rated one only by count
    lop = match("v", j1=(7.0, 6.0), j2=(2.0, 9.0))
    assert preference_pair(lop, {"j1": 120.0, "j2": 10.0}, CFG).chosen_model == "a"  # type: ignore[union-attr]
    flipped = preference_pair(lop, {"j1": 120.0, "j2": 10.0}, replace(CFG, aggregation="uniform"))
    assert flipped is not None and flipped.chosen_model == "b"
    assert (
        judge_weights(R, "uniform") == {"j1": 1.0, "j2": 1.0, "j3": 1.0}
        and judge_weights(R, "reputation") is R
    )
