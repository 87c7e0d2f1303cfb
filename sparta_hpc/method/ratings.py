"""The reputation update of one iteration (spec section 5) and its report.

Iteration numbers are the pipeline's 0-based ``t`` (0 .. T-1), which is also what the released code calls
iteration ``t`` (``run_pipeline.sh`` runs ``competition.py 0 .. 7``). ``history[u]`` holds the ratings at the
end of iteration ``u``. Every sum is ``math.fsum`` (exactly rounded), so the result does not depend on the
order in which judges are listed, and the same inputs always give the same floats.
"""

from __future__ import annotations

import math
from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass

from sparta_hpc.method.judging import counted_scores
from sparta_hpc.method.preferences import judge_weights, preference_pairs
from sparta_hpc.method.settings import RateConfig
from sparta_hpc.method.types import JudgedMatch, PlayerRating, PreferencePair, RatingTable

LAST_WEIGHTED_ITERATION = 7
"""Static and dynamic weights are computed for t = 2..7; from t = 8 on they stay those of t = 7."""
_SQRT2 = math.sqrt(2.0)


@dataclass(frozen=True, kw_only=True)
class RateResult:
    """Everything the rating stage produces for one iteration."""

    ratings: RatingTable
    pairs: list[PreferencePair]
    weights: dict[str, float]
    judge_counts: dict[str, dict[str, int]]
    """Per judge: ``usable`` (both scores), ``failed`` (a failed parse), ``missing`` (crashed) judgments."""
    num_matches: int
    num_skipped: int
    """Matches without any counted judge: no rating change (they still advance the gain schedule)."""

    def report(self) -> dict[str, object]:
        """The JSON form of everything but ratings and pairs (see docs/formats.md)."""
        keys = ("num_matches", "num_skipped", "weights", "judge_counts")
        return {"num_pairs": len(self.pairs)} | {k: getattr(self, k) for k in keys}


def gain(n: int, cfg: RateConfig) -> float:
    """G_n of the n-th match of the iteration (n >= 1): kappa, or K_n / c, K_n = max(K_min, K_0 d^(n/s))."""
    if cfg.gain == "constant":
        return cfg.kappa
    return max(cfg.k_min, cfg.k0 * cfg.decay ** (n / cfg.step)) / cfg.c


def competitor_weights(
    players: Sequence[str], history: Sequence[Mapping[str, float]], variant: str, iteration: int
) -> dict[str, float]:
    """Competitor weights w of iteration ``iteration`` (0-based t); ``history[u]``: ratings at the end of u.

    ``normal``, or t < 2: w = 1. ``static``: for u = 2..t, the lowest-rated player at the end of iteration
    u-1 that is not yet listed is appended; the j-th listed player gets w = 0.1*j. ``dynamic``: the t-1
    lowest-rated players at the end of iteration t-1 get w = 0.1*j in ascending order. Both use t = 7 for
    every t >= 8. Equal ratings keep the order of ``players``. Everyone not listed keeps w = 1.
    """
    weights = {p: 1.0 for p in players}
    t = min(iteration, LAST_WEIGHTED_ITERATION)
    if variant == "normal" or t < 2:
        return weights
    if len(history) < t:
        raise ValueError(
            f"rate.weights={variant} at iteration {iteration} needs the end-of-iteration ratings of "
            f"iterations 0..{t - 1} (entries 1..{t - 1} are used); the history has {len(history)}"
        )
    missing = [(u, p) for u in range(1, t) for p in players if p not in history[u]]
    if missing:
        raise ValueError(f"rating history: no rating for these (iteration, player): {missing}")
    listed: list[str] = []
    if variant == "static":
        for u in range(2, t + 1):
            remaining = [p for p in players if p not in listed]
            if remaining:
                listed.append(min(remaining, key=history[u - 1].__getitem__))
    else:
        listed = sorted(players, key=history[t - 1].__getitem__)[: t - 1]
    for j, p in enumerate(listed):
        weights[p] = 0.1 * j
    return weights


def score_gap(
    scores: Sequence[tuple[str, float, float]], ratings: Mapping[str, float], w_a: float, w_b: float
) -> float | None:
    """D = sum_k R_k (w_a s_k(a) - w_b s_k(b)) / sum_k R_k, R_k = ``ratings[k]``; ``None`` if the sum is 0."""
    total = math.fsum(ratings[k] for k, _, _ in scores)
    if total == 0:
        return None
    return math.fsum(ratings[k] * (w_a * sa - w_b * sb) for k, sa, sb in scores) / total


def update_pair(
    ratings: dict[str, float],
    deviations: dict[str, float],
    deltas: dict[str, list[float]],
    players: tuple[str, str],
    d: float,
    g_n: float,
    cfg: RateConfig,
) -> None:
    """Update one match in place: a, then b (seeing a's new rating), then both delta histories and sigmas."""
    a, b = players
    old = (ratings[a], ratings[b])
    for i, j, sign in ((a, b, 1.0), (b, a, -1.0)):
        spread = math.sqrt(deviations[i] ** 2 + deviations[j] ** 2)
        g = abs(math.erf((ratings[i] - ratings[j]) / (_SQRT2 * spread)))
        change = g_n * sign * d * math.tanh(deviations[i]) * max(g, cfg.eps)
        ratings[i] = max(cfg.floor, ratings[i] + change)
    for p, before in zip(players, old, strict=True):
        history = deltas[p]
        history.append(ratings[p] - before)
        del history[: -cfg.window]
        if len(history) >= 2:
            mean = math.fsum(history) / len(history)
            std = math.sqrt(math.fsum((x - mean) ** 2 for x in history) / len(history))
            deviations[p] = max(cfg.sigma_floor, std)


def check_names(match: JudgedMatch, players: Collection[str]) -> None:
    """Raise ValueError when a competitor or judge of ``match`` has no rating."""
    unknown = [p for p in (*match.players, *match.judgments) if p not in players]
    if unknown:
        raise ValueError(
            f"match {match.match_id!r}: no rating for {unknown} (rated players: {list(players)})"
        )


def judge_counts(judged: Sequence[JudgedMatch]) -> dict[str, dict[str, int]]:
    """Per judge, in order of first appearance: ``usable`` / ``failed`` / ``missing`` judgments."""
    counts: dict[str, dict[str, int]] = {}
    for match in judged:
        for judge, scores in match.judgments.items():
            kind = "missing" if scores is None else "failed" if None in scores else "usable"
            counts.setdefault(judge, {"usable": 0, "failed": 0, "missing": 0})[kind] += 1
    return counts


def rate_iteration(
    judged: Sequence[JudgedMatch],
    start: RatingTable,
    history: Sequence[Mapping[str, float]],
    cfg: RateConfig,
    iteration: int,
) -> RateResult:
    """Update the ratings sequentially over ``judged`` (in match order), then select the preference pairs."""
    players = list(start)
    for match in judged:
        check_names(match, start)
    weights = competitor_weights(players, history, cfg.weights, iteration)
    ratings = {p: start[p].rating for p in players}
    deviations = {p: start[p].deviation for p in players}
    deltas = {p: list(start[p].deltas) if cfg.keep_deltas else [] for p in players}
    counts = judge_counts(judged)
    judges = judge_weights(ratings, cfg.aggregation)
    skipped = 0
    for n, match in enumerate(judged, start=1):
        a, b = match.players
        d = score_gap(counted_scores(match.judgments, cfg.failed_judgment), judges, weights[a], weights[b])
        if d is None:
            skipped += 1
            continue
        update_pair(ratings, deviations, deltas, match.players, d, gain(n, cfg), cfg)
    return RateResult(
        ratings={
            p: PlayerRating(rating=ratings[p], deviation=deviations[p], deltas=tuple(deltas[p]))
            for p in players
        },
        pairs=preference_pairs(judged, ratings, cfg),
        weights=weights,
        judge_counts={p: counts[p] for p in players if p in counts},
        num_matches=len(judged),
        num_skipped=skipped,
    )
