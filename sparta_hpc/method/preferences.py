"""Preference pairs from the final ratings of an iteration (spec section 6)."""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence

from sparta_hpc.method.judging import counted_scores
from sparta_hpc.method.settings import RateConfig
from sparta_hpc.method.types import JudgedMatch, PreferencePair


def judge_weights(ratings: Mapping[str, float], aggregation: str) -> Mapping[str, float]:
    """R_k of every judge in D and S: ``ratings`` itself (``reputation``; later updates show through) or 1
    for every judge (``uniform``)."""
    return ratings if aggregation == "reputation" else dict.fromkeys(ratings, 1.0)


def aggregate_scores(
    match: JudgedMatch, ratings: Mapping[str, float], failed_judgment: str, aggregation: str = "reputation"
) -> tuple[float, float] | None:
    """``(S_a, S_b)``, S = sum_k R_k s_k / sum_k R_k over the counted judges with judge weights ``ratings``
    (all 1 under ``uniform``; no competitor weights), or ``None`` when no judge weight counts."""
    scores = counted_scores(match.judgments, failed_judgment)
    ratings = judge_weights(ratings, aggregation)
    total = math.fsum(ratings[k] for k, _, _ in scores)
    if total == 0:
        return None
    s_a = math.fsum(ratings[k] * sa for k, sa, _ in scores) / total
    s_b = math.fsum(ratings[k] * sb for k, _, sb in scores) / total
    return s_a, s_b


def preference_pair(
    match: JudgedMatch, ratings: Mapping[str, float], cfg: RateConfig
) -> PreferencePair | None:
    """The pair of one match, or ``None`` for an exact tie, no judge weight, or a margin below the minimum.

    The side with the larger ``aggregate_scores`` (with the final ratings R, or uniform weights) is chosen.
    """
    aggregate = aggregate_scores(match, ratings, cfg.failed_judgment, cfg.aggregation)
    if aggregate is None:
        return None
    s_a, s_b = aggregate
    first = 0 if s_a > s_b else 1  # an exact tie is dropped below, so the order there does not matter
    chosen, rejected = (s_a, s_b) if first == 0 else (s_b, s_a)
    margin = chosen - rejected
    if margin == 0 or margin < cfg.min_margin:
        return None
    return PreferencePair(
        match_id=match.match_id,
        prompt=match.prompt,
        chosen=match.responses[first],
        rejected=match.responses[1 - first],
        chosen_model=match.players[first],
        rejected_model=match.players[1 - first],
        margin=margin,
        score_chosen=chosen,
        score_rejected=rejected,
    )


def preference_pairs(
    judged: Sequence[JudgedMatch], ratings: Mapping[str, float], cfg: RateConfig
) -> list[PreferencePair]:
    """The pairs of the matches not dropped, in match order: the iteration's shared training set."""
    pairs = (preference_pair(m, ratings, cfg) for m in judged)
    return [p for p in pairs if p is not None]
