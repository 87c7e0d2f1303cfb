"""Bradley-Terry fits, bootstrap intervals, win rates and judge statistics against hand-computed values."""

from __future__ import annotations

import math

import numpy as np
import pytest

from sparta_hpc.method.types import JudgedMatch
from sparta_hpc.report import analysis
from sparta_hpc.report.analysis import Outcome


def games(a: str, b: str, wins: int, losses: int, ties: int = 0) -> list[Outcome]:
    return (
        [Outcome(players=(a, b), score=1.0)] * wins
        + [Outcome(players=(a, b), score=0.0)] * losses
        + [Outcome(players=(a, b), score=0.5)] * ties
    )


def test_two_player_fit_is_the_closed_form() -> None:
    # A beats B 3 times of 4: the MLE odds are 3:1, so r_A - r_B = 400 log10 3 = 190.85 around a mean of 1000
    bt = analysis.bradley_terry(games("A", "B", 3, 1), ["A", "B"], prior=0.0)
    assert bt["A"] == pytest.approx(1000 + 200 * math.log10(3), abs=1e-6)
    assert bt["B"] == pytest.approx(1000 - 200 * math.log10(3), abs=1e-6)
    # one virtual tie per pair adds half a win each way: odds (3 + 0.5) : (1 + 0.5) = 7:3
    bt = analysis.bradley_terry(games("A", "B", 3, 1), ["A", "B"], prior=1.0)
    assert bt["A"] - bt["B"] == pytest.approx(400 * math.log10(7 / 3), abs=1e-6)
    # a tie counts half a win for each side: 2 wins + 2 ties = 3 : 1 again
    bt = analysis.bradley_terry(games("A", "B", 2, 0, ties=2), ["A", "B"], prior=0.0)
    assert bt["A"] - bt["B"] == pytest.approx(400 * math.log10(3), abs=1e-6)


def test_three_player_fit_satisfies_the_likelihood_equations() -> None:
    results = games("A", "B", 5, 2) + games("B", "C", 4, 3, ties=1) + games("A", "C", 6, 1)
    players = ["A", "B", "C"]
    bt = analysis.bradley_terry(results, players, prior=0.0)
    p = {k: 10 ** ((v - 1000) / 400) for k, v in bt.items()}
    wins = analysis.win_matrix(results, players)
    # MLE: each player's wins equal its expected wins against the opponents it met
    for i, a in enumerate(players):
        expected = sum(
            (wins[i, j] + wins[j, i]) * p[a] / (p[a] + p[b]) for j, b in enumerate(players) if j != i
        )
        assert wins[i].sum() == pytest.approx(expected, abs=1e-8)
    assert bt["A"] > bt["B"] > bt["C"]
    assert np.mean(list(bt.values())) == pytest.approx(1000.0)


def test_everything_won_stays_finite_with_the_prior() -> None:
    bt = analysis.bradley_terry(games("A", "B", 4, 0), ["A", "B", "C"])
    assert all(math.isfinite(v) for v in bt.values())
    assert bt["A"] > bt["C"] > bt["B"]


def test_bootstrap_interval_matches_the_hand_computed_binomial_quantiles() -> None:
    # Resampling the 4 matches gives A k ~ Binomial(4, 3/4) wins. P(k <= 0) = 0.004 < 2.5% < P(k <= 1) = 0.051
    # and P(k <= 3) = 0.68 < 97.5%, so the percentile interval is [f(1), f(4)] with
    # f(k) = 1000 + 200 log10((k + 0.5) / (4 - k + 0.5)) (prior: one virtual tie).
    ci = analysis.bootstrap_bradley_terry(games("A", "B", 3, 1), ["A", "B"], seed=7, num_samples=4000)
    low, high = ci["A"]
    assert low == pytest.approx(1000 + 200 * math.log10(1.5 / 3.5), abs=1e-6)
    assert high == pytest.approx(1000 + 200 * math.log10(4.5 / 0.5), abs=1e-6)
    assert ci["B"] == pytest.approx((2000 - high, 2000 - low), abs=1e-6)


def test_bootstrap_is_reproducible_with_a_seed() -> None:
    rng = np.random.default_rng(0)
    players = ["A", "B", "C", "D"]
    results = [
        Outcome(players=tuple(rng.choice(players, 2, replace=False)), score=float(rng.choice([0, 0.5, 1])))
        for _ in range(60)
    ]
    first = analysis.bootstrap_bradley_terry(results, players, seed=3, num_samples=200)
    again = analysis.bootstrap_bradley_terry(results, players, seed=3, num_samples=200)
    other = analysis.bootstrap_bradley_terry(results, players, seed=4, num_samples=200)
    assert first == again
    assert first != other
    point = analysis.bradley_terry(results, players)
    assert all(first[p][0] < point[p] < first[p][1] for p in players)


def judged(match_id: str, players: tuple[str, str], judgments: dict) -> JudgedMatch:
    return JudgedMatch(
        match_id=match_id, prompt="q", players=players, responses=("x", "y"), judgments=judgments
    )


MATCHES = [
    # C (weight 100) says A, D (weight 300) says B: the weighted mean picks B
    judged("m0", ("A", "B"), {"C": (8.0, 6.0), "D": (5.0, 6.0)}),
    # only D scores; C failed to parse
    judged("m1", ("A", "B"), {"C": (None, 7.0), "D": (7.0, 4.0)}),
    # equal aggregate: a tie; D crashed
    judged("m2", ("B", "C"), {"A": (6.0, 6.0), "D": None}),
    # nobody counts: no outcome
    judged("m3", ("C", "D"), {"A": None, "B": (None, None)}),
]
WEIGHTS = {"A": 100.0, "B": 100.0, "C": 100.0, "D": 300.0}


def test_outcomes_use_the_reputation_weighted_mean_like_preference_selection() -> None:
    results = analysis.outcomes(MATCHES, WEIGHTS, "exclude")
    assert [(o.players, o.score) for o in results] == [
        (("A", "B"), 0.0),
        (("A", "B"), 1.0),
        (("B", "C"), 0.5),
    ]
    assert analysis.records(results, list(WEIGHTS)) == {
        "A": {"wins": 1, "losses": 1, "ties": 0},
        "B": {"wins": 1, "losses": 1, "ties": 1},
        "C": {"wins": 0, "losses": 0, "ties": 1},
        "D": {"wins": 0, "losses": 0, "ties": 0},
    }
    # neutral (released): C's failed judgment in m1 counts 5 vs 5, and B's in m3 makes that match a tie
    neutral = analysis.outcomes(MATCHES, WEIGHTS, "neutral")
    assert [o.score for o in neutral] == [0.0, 1.0, 0.5, 0.5]


def test_win_rate_matrix() -> None:
    results = games("A", "B", 3, 1) + games("B", "C", 0, 0, ties=2)
    rates = analysis.win_rate_matrix(results, ["A", "B", "C"])
    assert rates[0, 1] == 0.75 and rates[1, 0] == 0.25
    assert rates[1, 2] == 0.5 and rates[2, 1] == 0.5
    assert np.isnan(rates[0, 2]) and np.isnan(rates[0, 0])


def test_judge_parse_failures_and_agreement_with_the_aggregate() -> None:
    stats = analysis.judge_stats(MATCHES, WEIGHTS, "exclude")
    # C: usable in m0 (says A, aggregate B: disagree), failed in m1
    assert stats["C"] == {
        "usable": 1,
        "failed": 1,
        "missing": 0,
        "compared": 1,
        "parse_failure_rate": 0.5,
        "agreement": 0.0,
    }
    # D: agrees in m0 and m1, crashed in m2
    assert (stats["D"]["usable"], stats["D"]["missing"], stats["D"]["agreement"]) == (2, 1, 1.0)
    assert stats["D"]["parse_failure_rate"] == 0.0
    # A: tie in m2 equals the aggregate tie; crashed in m3
    assert (stats["A"]["agreement"], stats["A"]["missing"]) == (1.0, 1)
    # B: only a failed judgment: no rate of agreement
    assert (stats["B"]["parse_failure_rate"], stats["B"]["agreement"]) == (1.0, None)


def test_judge_agreement_matrix() -> None:
    matrix = analysis.judge_agreement_matrix(MATCHES, ["A", "B", "C", "D"])
    c, d = 2, 3
    assert matrix[c, d] == 0.0 and matrix[d, c] == 0.0  # m0 only: C says A, D says B
    assert matrix[d, d] == 1.0
    assert np.isnan(matrix[0, 2])  # A and C never scored the same match
    assert np.isnan(matrix[1, 1])  # B never produced a usable judgment


def test_leaderboard_rows() -> None:
    reps = {"A": (101.0, 0.3), "B": (99.0, 0.4), "C": (100.0, 0.2), "D": (100.5, 0.5)}
    rows = analysis.leaderboard(MATCHES, reps, "exclude", seed=0, num_samples=50)
    assert [r["player"] for r in rows] == ["A", "D", "C", "B"]
    assert [r["rank"] for r in rows] == [1, 2, 3, 4]
    for r in rows:
        assert r["bt_low"] <= r["bt"] <= r["bt_high"]
    assert rows[0]["reputation"] == 101.0 and rows[0]["deviation"] == 0.3


def test_leaderboard_follows_uniform_aggregation() -> None:
    # C (R 200) sees A ahead, D (R 10) sees B far ahead: the weighted S gives A the win, the plain mean B
    match = JudgedMatch(
        match_id="m",
        prompt="q",
        players=("A", "B"),
        responses=("a", "b"),
        judgments={"C": (6, 5), "D": (1, 9)},
    )
    reps = {"A": (100.0, 0.5), "B": (100.0, 0.5), "C": (200.0, 0.5), "D": (10.0, 0.5)}
    for aggregation, winner, agrees in (("reputation", "A", "C"), ("uniform", "B", "D")):
        rows = analysis.leaderboard([match], reps, "exclude", seed=0, num_samples=5, aggregation=aggregation)
        by_player = {r["player"]: r for r in rows}
        assert [p for p in "AB" if by_player[p]["wins"]] == [winner]
        assert [p for p in "CD" if by_player[p]["judge_agreement"] == 1.0] == [agrees]
