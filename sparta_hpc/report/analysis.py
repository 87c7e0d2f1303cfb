"""The science of a run in numbers: pure functions over judged matches (numpy, no file I/O).

A match's outcome is decided as in preference selection (spec section 6): the side with the larger
reputation-weighted mean score S = sum_k R_k s_k / sum_k R_k over the counted judges wins (all R_k = 1 under
``rate.aggregation=uniform``); an exact tie counts half for each side; a match without judge weight has no
outcome. On these outcomes: win/loss/tie counts, a Bradley-Terry fit (MLE, Elo scale) with seeded bootstrap
confidence intervals over matches, and pairwise win rates. On the judges: parse-failure rates and agreement
with the aggregate and with each other.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from sparta_hpc.method.preferences import aggregate_scores, judge_weights
from sparta_hpc.method.ratings import judge_counts
from sparta_hpc.method.types import JudgedMatch

SCALE = 400.0
"""Bradley-Terry ratings are ``ANCHOR + SCALE * log10(strength)``: 400 points = 10:1 odds (Elo scale)."""
ANCHOR = 1000.0
"""Mean Bradley-Terry rating of the players."""


@dataclass(frozen=True, kw_only=True)
class Outcome:
    """The result of one match: ``score`` 1.0 if ``players[0]`` won, 0.0 if it lost, 0.5 on a tie."""

    players: tuple[str, str]
    score: float


def verdict(s_a: float, s_b: float) -> float:
    """1.0 (a better), 0.0 (b better) or 0.5 (equal)."""
    return 1.0 if s_a > s_b else 0.0 if s_a < s_b else 0.5


def outcomes(
    judged: Sequence[JudgedMatch], ratings: Mapping[str, float], failed_judgment: str
) -> list[Outcome]:
    """The outcome of every match that has one, in match order."""
    out = []
    for m in judged:
        agg = aggregate_scores(m, ratings, failed_judgment)
        if agg is not None:
            out.append(Outcome(players=m.players, score=verdict(*agg)))
    return out


def records(results: Sequence[Outcome], players: Sequence[str]) -> dict[str, dict[str, int]]:
    """``{player: {"wins", "losses", "ties"}}``."""
    table = {p: {"wins": 0, "losses": 0, "ties": 0} for p in players}
    for o in results:
        a, b = o.players
        if o.score == 0.5:
            table[a]["ties"] += 1
            table[b]["ties"] += 1
        else:
            winner, loser = (a, b) if o.score == 1.0 else (b, a)
            table[winner]["wins"] += 1
            table[loser]["losses"] += 1
    return table


def _indices(results: Sequence[Outcome], players: Sequence[str]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    pos = {p: i for i, p in enumerate(players)}
    ia = np.array([pos[o.players[0]] for o in results], dtype=np.intp)
    ib = np.array([pos[o.players[1]] for o in results], dtype=np.intp)
    return ia, ib, np.array([o.score for o in results], dtype=float)


def _wins(
    m: int, ia: np.ndarray, ib: np.ndarray, s: np.ndarray, weight: np.ndarray | None = None
) -> np.ndarray:
    """``W[i, j]``: wins of i over j (ties half), each match counted ``weight`` times."""
    w = np.ones_like(s) if weight is None else weight
    wins = np.zeros((m, m))
    np.add.at(wins, (ia, ib), w * s)
    np.add.at(wins, (ib, ia), w * (1.0 - s))
    return wins


def win_matrix(results: Sequence[Outcome], players: Sequence[str]) -> np.ndarray:
    """``W[i, j]``: wins of ``players[i]`` over ``players[j]``, ties counting half."""
    return _wins(len(players), *_indices(results, players))


def win_rate_matrix(results: Sequence[Outcome], players: Sequence[str]) -> np.ndarray:
    """``W[i, j] / games(i, j)``, NaN where the two never met (and on the diagonal)."""
    wins = win_matrix(results, players)
    games = wins + wins.T
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(games > 0, wins / np.where(games > 0, games, 1.0), np.nan)


def fit_bradley_terry(
    wins: np.ndarray, prior: float = 1.0, tol: float = 1e-12, max_iter: int = 100_000
) -> np.ndarray:
    """BT ratings (``ANCHOR + SCALE log10 p``, mean ``ANCHOR``) maximising the likelihood of ``wins``.

    ``prior`` virtual ties are added between every two players (``prior / 2`` wins each way), which keeps
    every rating finite when a player won or lost everything; with two players A, B the fit is exactly
    ``r_A - r_B = SCALE log10((W_AB + prior/2) / (W_BA + prior/2))``. Minorize-maximize updates (Hunter 2004).
    """
    m = wins.shape[0]
    w = wins + (prior / 2.0) * (1.0 - np.eye(m))
    games = w + w.T
    total = w.sum(axis=1)
    p = np.ones(m)
    for _ in range(max_iter):
        denom = (games / (p[:, None] + p[None, :])).sum(axis=1)
        new = total / denom
        new /= math.exp(np.log(new).mean())
        done = np.max(np.abs(np.log(new) - np.log(p))) < tol
        p = new
        if done:
            break
    logs = SCALE * np.log10(p)
    return ANCHOR + logs - logs.mean()


def bradley_terry(results: Sequence[Outcome], players: Sequence[str], prior: float = 1.0) -> dict[str, float]:
    """``{player: BT rating}`` fitted on ``results`` (see ``fit_bradley_terry``)."""
    ratings = fit_bradley_terry(win_matrix(results, players), prior)
    return {p: float(r) for p, r in zip(players, ratings, strict=True)}


def bootstrap_bradley_terry(
    results: Sequence[Outcome],
    players: Sequence[str],
    *,
    seed: int | Sequence[int],
    num_samples: int = 1000,
    level: float = 0.95,
    prior: float = 1.0,
) -> dict[str, tuple[float, float]]:
    """Percentile bootstrap interval of each BT rating: refit on ``num_samples`` resamples of the matches
    (with replacement, same size) drawn by ``numpy.random.default_rng(seed)``; the same seed gives the same
    intervals."""
    if not 0 < level < 1:
        raise ValueError(f"level={level} must be in (0, 1)")
    m = len(players)
    if not results:
        flat = fit_bradley_terry(np.zeros((m, m)), prior)
        return {p: (float(r), float(r)) for p, r in zip(players, flat, strict=True)}
    ia, ib, s = _indices(results, players)
    rng = np.random.default_rng(seed)
    samples = np.empty((num_samples, m))
    for k in range(num_samples):
        counts = np.bincount(rng.integers(0, len(s), size=len(s)), minlength=len(s)).astype(float)
        samples[k] = fit_bradley_terry(_wins(m, ia, ib, s, counts), prior)
    low, high = np.quantile(samples, [(1 - level) / 2, 1 - (1 - level) / 2], axis=0)
    return {p: (float(lo), float(hi)) for p, lo, hi in zip(players, low, high, strict=True)}


# ---------------------------------------------------------------- judges


def _usable(match: JudgedMatch) -> dict[str, float]:
    """``{judge: verdict}`` of the judges that scored both responses of ``match``."""
    out = {}
    for judge, scores in match.judgments.items():
        if scores is not None and scores[0] is not None and scores[1] is not None:
            out[judge] = verdict(scores[0], scores[1])
    return out


def judge_stats(
    judged: Sequence[JudgedMatch], ratings: Mapping[str, float], failed_judgment: str
) -> dict[str, dict[str, Any]]:
    """Per judge: usable / failed / missing judgments, ``parse_failure_rate`` = failed / (usable + failed),
    and ``agreement`` = share of its usable judgments whose verdict (a, b or tie) equals the aggregate's
    (the judge is part of the aggregate it is compared with). Rates are None without any judgment."""
    stats: dict[str, dict[str, Any]] = {
        judge: {**counts, "agree": 0, "compared": 0} for judge, counts in judge_counts(judged).items()
    }
    for m in judged:
        agg = aggregate_scores(m, ratings, failed_judgment)
        if agg is None:
            continue
        for judge, judge_verdict in _usable(m).items():
            stats[judge]["compared"] += 1
            stats[judge]["agree"] += judge_verdict == verdict(*agg)
    for s in stats.values():
        produced = s["usable"] + s["failed"]
        s["parse_failure_rate"] = s["failed"] / produced if produced else None
        s["agreement"] = s.pop("agree") / s["compared"] if s["compared"] else None
    return dict(sorted(stats.items()))


def judge_agreement_matrix(judged: Sequence[JudgedMatch], judges: Sequence[str]) -> np.ndarray:
    """``A[k, l]``: share of the matches both judges scored where their verdicts agree; NaN if none."""
    pos = {j: i for i, j in enumerate(judges)}
    n = len(judges)
    agree = np.zeros((n, n))
    both = np.zeros((n, n))
    for m in judged:
        usable = [(pos[j], v) for j, v in _usable(m).items() if j in pos]
        for k, vk in usable:
            for l_, vl in usable:
                both[k, l_] += 1
                agree[k, l_] += vk == vl
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(both > 0, agree / np.where(both > 0, both, 1.0), np.nan)


# ---------------------------------------------------------------- leaderboard


def leaderboard(
    judged: Sequence[JudgedMatch],
    reputations: Mapping[str, tuple[float, float]],
    failed_judgment: str,
    *,
    seed: int | Sequence[int],
    num_samples: int = 1000,
    aggregation: str = "reputation",
) -> list[dict[str, Any]]:
    """One row per player, best reputation first: SPARTA ``reputation`` and ``deviation`` (``reputations``:
    ``{player: (R, sigma)}`` at the end of the iteration, also the judge weights unless ``aggregation`` is
    ``uniform``), BT rating with its 95% bootstrap interval, wins / losses / ties, and the player's
    parse-failure rate and agreement as a judge."""
    players = list(reputations)
    weights = judge_weights({p: r for p, (r, _) in reputations.items()}, aggregation)
    results = outcomes(judged, weights, failed_judgment)
    bt = bradley_terry(results, players)
    ci = bootstrap_bradley_terry(results, players, seed=seed, num_samples=num_samples)
    wl = records(results, players)
    judges = judge_stats(judged, weights, failed_judgment)
    ranked = sorted(players, key=lambda p: (-reputations[p][0], p))
    return [
        {
            "rank": i,
            "player": p,
            "reputation": reputations[p][0],
            "deviation": reputations[p][1],
            "bt": bt[p],
            "bt_low": ci[p][0],
            "bt_high": ci[p][1],
            **wl[p],
            "parse_failure_rate": judges.get(p, {}).get("parse_failure_rate"),
            "judge_agreement": judges.get(p, {}).get("agreement"),
        }
        for i, p in enumerate(ranked, start=1)
    ]
