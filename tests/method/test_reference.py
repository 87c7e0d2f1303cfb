"""The rating stage against an independent, slow reference written from the spec's formulas (sections 5-6).

The reference follows the released code's shape rather than ours: plain left-to-right sums in the order the
judges are listed, Phi(z) - Phi(-z) from two CDF values, the gain applied as K_n then divided by c, the
population std from ``statistics``, and weights rebuilt by replaying the "files" of earlier iterations.
On long random sequences the two must agree to 1e-9.
"""

import math
import random
import statistics
import zlib
from typing import Any

import pytest

from sparta_hpc.method.ratings import rate_iteration
from sparta_hpc.method.settings import PROFILES, RateConfig
from sparta_hpc.method.types import JudgedMatch, PlayerRating


def _phi(x: float) -> float:
    return 0.5 * (1.0 + math.erf(x / math.sqrt(2.0)))


def reference_weights(
    history: list[dict[str, float]], variant: str, t: int, players: list[str]
) -> dict[str, float]:
    w = {p: 1.0 for p in players}
    if variant == "normal":
        return w
    if t >= 8:  # the released code reloads the weights it saved in iteration 7
        return reference_weights(history, variant, 7, players)
    if t < 2:
        return w
    chosen: list[str] = []
    if variant == "static":
        for it in range(2, t + 1):
            info = history[it - 1]
            left = [p for p in info if p not in chosen]
            if left:
                chosen.append(sorted(left, key=lambda p: info[p])[0])
    else:
        info = history[t - 1]
        chosen = sorted(info, key=lambda p: info[p])[: t - 1]
    for idx, p in enumerate(chosen):
        w[p] = 0.0 if idx == 0 else 0.1 * idx
    return w


def reference_rate(
    matches: list[dict[str, Any]],
    start: dict[str, dict[str, Any]],
    history: list[dict[str, float]],
    o: dict[str, Any],
    t: int,
) -> tuple[dict[str, dict[str, Any]], list[dict[str, Any]], int]:
    """The spec, sections 5 and 6, written plainly (``o``: the switches); also how often the floor bound."""
    score = {p: v["rating"] for p, v in start.items()}
    dev = {p: v["deviation"] for p, v in start.items()}
    hist = {p: (list(v["deltas"]) if o["keep_deltas"] else []) for p, v in start.items()}
    w = reference_weights(history, o["weights"], t, list(start))
    floor_hits = [0]

    def judge_scores(m: dict[str, Any]) -> list[tuple[str, float, float]]:
        out = []
        for judge, s in m["judgments"].items():
            if s is None:
                continue
            if s[0] is None or s[1] is None:
                if o["failed"] == "exclude":
                    continue
                s = (5.0, 5.0)
            out.append((judge, s[0], s[1]))
        return out

    for n, m in enumerate(matches, start=1):
        a, b = m["players"]
        num = den = 0.0
        for judge, sa, sb in judge_scores(m):
            num += score[judge] * (sa * w[a] - sb * w[b])
            den += score[judge]
        if den == 0:
            continue
        diff = num / den
        k = (
            o["kappa"]
            if o["gain"] == "constant"
            else max(o["k_min"], o["k0"] * o["decay"] ** (n / o["step"]))
        )
        before = {a: score[a], b: score[b]}
        for i, me in enumerate((a, b)):
            other = b if i == 0 else a
            z = (score[me] - score[other]) / math.sqrt(dev[me] ** 2 + dev[other] ** 2)
            delta = (
                k * (diff if i == 0 else -diff) * math.tanh(dev[me]) * max(abs(_phi(z) - _phi(-z)), o["eps"])
            )
            if o["gain"] == "schedule":
                delta = delta / o["c"]
            floor_hits[0] += score[me] + delta < o["floor"]
            score[me] = max(o["floor"], score[me] + delta)
        for p in (a, b):
            hist[p] = (hist[p] + [score[p] - before[p]])[-o["window"] :]
            if len(hist[p]) >= 2:
                dev[p] = max(o["sigma_floor"], statistics.pstdev(hist[p]))

    pairs = []
    for m in matches:
        total = sa_sum = sb_sum = 0.0
        for judge, sa, sb in judge_scores(m):
            sa_sum += score[judge] * sa
            sb_sum += score[judge] * sb
            total += score[judge]
        if total == 0:
            continue
        s_a, s_b = sa_sum / total, sb_sum / total
        first = 0 if s_a > s_b else 1
        margin = (s_a - s_b) if first == 0 else -(s_a - s_b)
        if margin != 0 and margin >= o["min_margin"]:
            pairs.append(
                {
                    "match_id": m["match_id"],
                    "chosen_model": m["players"][first],
                    "margin": margin,
                    "score_chosen": max(s_a, s_b),
                    "score_rejected": min(s_a, s_b),
                }
            )
    ratings = {p: {"rating": score[p], "deviation": dev[p], "deltas": hist[p]} for p in start}
    return ratings, pairs, floor_hits[0]


def random_case(seed: int, num_players: int, num_matches: int, t: int) -> tuple[Any, Any, Any]:
    rng = random.Random(seed)
    players = [f"m{i}" for i in range(num_players)]
    start = {
        p: {
            "rating": rng.uniform(10.0, 200.0),
            "deviation": rng.uniform(0.1, 2.0),
            "deltas": [rng.gauss(0, 0.5) for _ in range(rng.randrange(0, 14))],
        }
        for p in players
    }
    history = [{p: rng.uniform(50, 150) for p in players} for _ in range(t)]
    matches = []
    for i in range(num_matches):
        a, b = rng.sample(players, 2)
        judgments: dict[str, Any] = {}
        for j in rng.sample([p for p in players if p not in (a, b)], num_players - 2):
            u = rng.random()
            if u < 0.04:
                judgments[j] = None  # crashed judge
            elif u < 0.12:
                judgments[j] = rng.choice(
                    [(None, rng.randint(1, 10)), (rng.randint(0, 10), None), (None, None)]
                )
            elif u > 0.97:
                continue  # judge absent from the record
            else:
                judgments[j] = (float(rng.randint(1, 10)), float(rng.randint(1, 10)))
        matches.append({"match_id": f"x{i}", "players": (a, b), "judgments": judgments})
    return start, history, matches


def to_records(start: Any, matches: Any) -> tuple[dict[str, PlayerRating], list[JudgedMatch]]:
    table = {
        p: PlayerRating(rating=v["rating"], deviation=v["deviation"], deltas=tuple(v["deltas"]))
        for p, v in start.items()
    }
    judged = [
        JudgedMatch(
            match_id=m["match_id"],
            prompt="q",
            players=m["players"],
            responses=("A", "B"),
            judgments={
                j: None
                if s is None
                else (None if s[0] is None else float(s[0]), None if s[1] is None else float(s[1]))
                for j, s in m["judgments"].items()
            },
        )
        for m in matches
    ]
    return table, judged


def released() -> RateConfig:
    return RateConfig(**{k[5:]: v for k, v in PROFILES["released"].items() if k.startswith("rate.")})


CASES = [
    # (name, config, iteration, players, matches)
    ("released t0", released(), 0, 6, 3000),
    ("released static t3", released(), 3, 6, 3000),
    ("released static t7", released(), 7, 10, 2000),
    ("released static t9", released(), 9, 6, 2000),
    (
        "released dynamic c10 t5",
        RateConfig(**{**vars(released()), "weights": "dynamic", "c": 10.0}),
        5,
        10,
        2000,
    ),
    ("paper", RateConfig(), 2, 8, 3000),
    ("paper big gain (floor binds)", RateConfig(kappa=20.0, min_margin=0.5), 1, 5, 3000),
    (
        "paper neutral window 4",
        RateConfig(failed_judgment="neutral", window=4, eps=0.05, sigma_floor=0.3),
        4,
        7,
        2000,
    ),
]


@pytest.mark.parametrize(("name", "cfg", "t", "num_players", "num_matches"), CASES, ids=[c[0] for c in CASES])
def test_matches_reference(name: str, cfg: RateConfig, t: int, num_players: int, num_matches: int) -> None:
    start, history, matches = random_case(zlib.crc32(name.encode()), num_players, num_matches, t)
    opts = {**vars(cfg), "failed": cfg.failed_judgment}
    want_ratings, want_pairs, floor_hits = reference_rate(matches, start, history, opts, t)
    table, judged = to_records(start, matches)
    got = rate_iteration(judged, table, history, cfg, t)
    assert list(got.ratings) == list(want_ratings)
    for p, want in want_ratings.items():
        have = got.ratings[p]
        assert have.rating == pytest.approx(want["rating"], abs=1e-9, rel=0)
        assert have.deviation == pytest.approx(want["deviation"], abs=1e-9, rel=0)
        assert have.deltas == pytest.approx(tuple(want["deltas"]), abs=1e-9, rel=0)
    assert len(got.pairs) == len(want_pairs) > num_matches // 2
    for have_pair, want_pair in zip(got.pairs, want_pairs, strict=True):
        assert have_pair.match_id == want_pair["match_id"]
        assert have_pair.chosen_model == want_pair["chosen_model"]
        for key in ("margin", "score_chosen", "score_rejected"):
            assert getattr(have_pair, key) == pytest.approx(want_pair[key], abs=1e-9, rel=0)
    moved = sum(abs(got.ratings[p].rating - start[p]["rating"]) > 1e-6 for p in start)
    assert moved >= num_players - 1  # the sequence really exercised the update
    if name.startswith("paper big gain"):
        assert floor_hits >= 10  # this case is meant to hit the floor
