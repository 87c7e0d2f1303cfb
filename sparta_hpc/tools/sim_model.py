"""The simulated tournament of ``sparta-hpc simulate``: the real method core on simulated players and judges.

Per iteration t, with the ratings R at its start:

1. ``method.matchmaking.sample_prompts`` picks N prompt indices (``plan.prompts``) from a pool of simulated
   prompts, and ``plan_matches`` pairs the players exactly as a run does.
2. Each response gets a true value ``v = q_player + d_prompt + e`` (q: the player's latent quality, d: the
   prompt's offset, shared by both responses, e ~ N(0, response_std), one draw per response).
3. Every player but the two competitors judges both responses (``method.judging.judges_for``). Judge k's score
   of a response of player i is ``clip(rint(c + signal (v - c) + b_k + B[k, i] + n), 1, 10)`` with c = 5.5,
   n ~ N(0, noise_k), ``noise_k = judge_noise * exp(-judge_skill * z_k)`` (z_k: judge k's quality,
   standardised over the pool, so better players are better judges when ``judge_skill > 0``),
   ``b_k = judge_bias + judge_bias_std * N(0, 1)`` (drawn once per seed) and ``B[k, i]`` the judge's
   preference: ``family_bonus`` when k and i share a family (self-preference: competitors never judge their
   own match, so a judge favours its family, e.g. the models on its base) plus ``shill_bonus`` when k is the
   shill and i its target. Each score fails to parse with probability ``parse_failure`` (``None``, handled by
   ``rate.failed_judgment``).
4. ``method.ratings.rate_iteration`` rates the judged matches and selects the preference pairs.
5. Optional learning (``learn_rate > 0``): every player trains on the same pairs, so every quality moves by
   ``learn_rate * (accuracy - 0.5)``, accuracy = the share of pairs whose chosen response is truly better.

All randomness comes from the run seed: numpy generators seeded with ``(seed, stream, t)`` and the method's
own seeded generators, so a seed gives the same numbers on every machine. The draws do not depend on the
``plan``/``rate`` settings (only on the scale), so settings compared under one seed share their noise.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np

from sparta_hpc.method.judging import judges_for
from sparta_hpc.method.matchmaking import plan_matches, sample_prompts
from sparta_hpc.method.ratings import rate_iteration
from sparta_hpc.method.settings import PlanConfig, RateConfig
from sparta_hpc.method.types import JudgedMatch, PlayerRating, PreferencePair, RatingTable, Score

CENTER = 5.5
"""The middle of the 1-10 score scale: ``judge_signal`` scales a response's distance from it."""
FLOOR_BAND = 1.0
"""A player counts as at the floor when its rating is below ``rate.floor + FLOOR_BAND``: a floored player that
wins a match bounces to 10.1 or so and falls back, so the exact floor would miss most of them."""
_SETUP, _RESPONSES, _JUDGES = 0, 1, 2
"""Random streams: drawn once per seed, per iteration for the responses, per iteration for the judges."""


@dataclass
class SimConfig:
    """The simulated players and judges (``sim.*`` keys of ``sparta-hpc simulate``)."""

    players: int = 10
    """m, the number of players (pool size); named p0, p1, ... in the order of ``quality``."""
    quality: str = "even:4:8"
    """Latent qualities q on the 1-10 score scale: ``even:LO:HI`` (evenly spaced, p0 = LO),
    ``normal:MEAN:STD`` (drawn per seed) or ``values:Q0:Q1:...`` (one per player)."""
    iterations: int = 8
    """T, the number of iterations."""
    prompt_pool: int = 20000
    """Number of simulated prompts to sample from (``plan.prompts`` picks per iteration)."""
    prompt_std: float = 1.0
    """Std of a prompt's offset d (easy and hard prompts; shared by both responses of a match)."""
    response_std: float = 1.0
    """Std of a response's own variation e around its player's quality."""
    judge_noise: float = 1.5
    """Std of a judge's score noise before rounding (at average judge quality)."""
    judge_skill: float = 0.0
    """Better players judge better: noise_k = judge_noise * exp(-judge_skill * z_k); 0: every judge alike."""
    judge_signal: float = 1.0
    """How much a score follows the true value: 1 honest, 0 pure noise (scores independent of quality)."""
    judge_bias: float = 0.0
    """Constant offset every judge adds to every score."""
    judge_bias_std: float = 0.0
    """Std of a per-judge constant offset (drawn once per seed)."""
    families: int = 1
    """Players are split round-robin into this many families (p_i in family i mod families)."""
    family_bonus: float = 0.0
    """Self-preference: what a judge adds to scores of responses by players of its own family."""
    shill: int | None = None
    """Index of a judge that favours one player (null: none)."""
    shill_target: int = 0
    """Index of the player the shill favours."""
    shill_bonus: float = 10.0
    """What the shill adds to its target's scores (10: the target always gets 10 from it)."""
    parse_failure: float = 0.0
    """Probability that a score fails to parse (``None``; ``rate.failed_judgment`` decides what it counts)."""
    learn_rate: float = 0.0
    """DPO model: every quality moves by learn_rate * (pair accuracy - 0.5) after each iteration; 0: none."""

    def __post_init__(self) -> None:
        if self.players < 3:
            raise ValueError(f"sim.players={self.players} must be >= 3 (two players and a judge)")
        for key in ("iterations", "prompt_pool", "families"):
            if getattr(self, key) < 1:
                raise ValueError(f"sim.{key}={getattr(self, key)} must be >= 1")
        for key in ("prompt_std", "response_std", "judge_noise", "judge_bias_std"):
            if not getattr(self, key) >= 0:
                raise ValueError(f"sim.{key}={getattr(self, key)} must be >= 0")
        if not 0 <= self.parse_failure <= 1:
            raise ValueError(f"sim.parse_failure={self.parse_failure} must be in [0, 1]")
        for key in ("shill", "shill_target"):
            index = getattr(self, key)
            if index is not None and not 0 <= index < self.players:
                raise ValueError(f"sim.{key}={index} must be a player index in 0..{self.players - 1}")
        if self.shill is not None and self.shill == self.shill_target:
            raise ValueError(f"sim.shill={self.shill} cannot favour itself: it never judges its own match")
        self.qualities(0)  # checks the spec

    def qualities(self, seed: int) -> list[float]:
        """The players' qualities at iteration 0 (``normal`` draws from the seed)."""
        kind, _, rest = self.quality.partition(":")
        try:
            numbers = [float(x) for x in rest.split(":")] if rest else []
        except ValueError:
            numbers = []
        if kind == "even" and len(numbers) == 2:
            return [float(x) for x in np.linspace(numbers[0], numbers[1], self.players)]
        if kind == "normal" and len(numbers) == 2 and numbers[1] >= 0:
            rng = np.random.default_rng([seed, _SETUP, 1])
            return [float(x) for x in rng.normal(numbers[0], numbers[1], self.players)]
        if kind == "values" and len(numbers) == self.players:
            return numbers
        raise ValueError(
            f"sim.quality={self.quality!r}: expected even:LO:HI, normal:MEAN:STD or "
            f"values:Q0:...:Q{self.players - 1} ({self.players} values, one per player)"
        )


@dataclass(frozen=True, kw_only=True)
class SimRun:
    """One simulated run: per iteration its metrics, end-of-iteration ratings and the true qualities."""

    players: list[str]
    metrics: list[dict[str, float]]
    ratings: list[dict[str, float]]
    qualities: list[list[float]]
    """``qualities[t]``: the players' qualities during iteration t."""


def ranks(values: Sequence[float]) -> list[float]:
    """1-based ranks, ties sharing the mean of their ranks."""
    order = sorted(range(len(values)), key=lambda i: values[i])
    out = [0.0] * len(values)
    start = 0
    while start < len(order):
        end = start
        while end + 1 < len(order) and values[order[end + 1]] == values[order[start]]:
            end += 1
        for i in order[start : end + 1]:
            out[i] = (start + end) / 2 + 1
        start = end + 1
    return out


def spearman(x: Sequence[float], y: Sequence[float]) -> float:
    """Spearman's rank correlation (Pearson of the tie-averaged ranks); nan when one side is constant."""
    rx, ry = ranks(x), ranks(y)
    mx, my = math.fsum(rx) / len(rx), math.fsum(ry) / len(ry)
    cov = math.fsum((a - mx) * (b - my) for a, b in zip(rx, ry, strict=True))
    var = math.fsum((a - mx) ** 2 for a in rx) * math.fsum((b - my) ** 2 for b in ry)
    return cov / math.sqrt(var) if var > 0 else math.nan


def herfindahl(ratings: Sequence[float]) -> float:
    """Sum of squared shares R_i / sum R: 1/m when every judge weighs the same, 1 when one has all weight."""
    total = math.fsum(ratings)
    return math.fsum((r / total) ** 2 for r in ratings)


def _judge_setup(sim: SimConfig, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Per-judge constant offsets b_k and the preference matrix B[judge, player]."""
    m = sim.players
    rng = np.random.default_rng([seed, _SETUP, 2])
    bias = sim.judge_bias + sim.judge_bias_std * rng.standard_normal(m)
    family = np.arange(m) % sim.families
    prefer = sim.family_bonus * (family[:, None] == family[None, :]).astype(float)
    if sim.shill is not None:
        prefer[sim.shill, sim.shill_target] += sim.shill_bonus
    return bias, prefer


def _judge_noise(sim: SimConfig, quality: np.ndarray) -> np.ndarray:
    std = float(quality.std())
    z = (quality - quality.mean()) / std if std > 0 else np.zeros_like(quality)
    return np.asarray(sim.judge_noise * np.exp(-sim.judge_skill * z))


def judge_iteration(
    sim: SimConfig,
    seed: int,
    t: int,
    matches: Sequence[tuple[str, tuple[int, int], float]],
    players: Sequence[str],
    quality: np.ndarray,
    judge_setup: tuple[np.ndarray, np.ndarray],
) -> tuple[list[JudgedMatch], dict[tuple[str, str], float]]:
    """The judged matches of one iteration and the true value of each response, by (match id, player).

    ``matches``: ``(match_id, (index of a, index of b), prompt offset d)`` in match order.
    """
    n, m = len(matches), len(players)
    pair = np.array([p for _, p, _ in matches], dtype=int).reshape(n, 2)
    offset = np.array([d for _, _, d in matches], dtype=float).reshape(n, 1)
    responses = np.random.default_rng([seed, _RESPONSES, t])
    value = quality[pair] + offset + sim.response_std * responses.standard_normal((n, 2))
    rng = np.random.default_rng([seed, _JUDGES, t])
    noise = rng.standard_normal((n, m, 2)) * _judge_noise(sim, quality)[None, :, None]
    failed = rng.random((n, m, 2)) < sim.parse_failure
    bias, prefer = judge_setup
    raw = CENTER + sim.judge_signal * (value[:, None, :] - CENTER) + bias[None, :, None]
    raw = raw + np.stack([prefer[:, pair[:, 0]].T, prefer[:, pair[:, 1]].T], axis=2) + noise
    scores = np.clip(np.rint(raw), 1, 10).tolist()
    failed_list = failed.tolist()
    judged: list[JudgedMatch] = []
    values: dict[tuple[str, str], float] = {}
    for row, (match_id, (a, b), _) in enumerate(matches):
        names = (players[a], players[b])
        judgments: dict[str, tuple[Score, Score] | None] = {}
        for judge in judges_for(players, names):
            k = players.index(judge)
            sa, sb = scores[row][k]
            fa, fb = failed_list[row][k]
            judgments[judge] = (None if fa else sa, None if fb else sb)
        judged.append(
            JudgedMatch(
                match_id=match_id,
                prompt=match_id,
                players=names,
                responses=(f"{names[0]}@{match_id}", f"{names[1]}@{match_id}"),
                judgments=judgments,
            )
        )
        values[match_id, names[0]] = float(value[row, 0])
        values[match_id, names[1]] = float(value[row, 1])
    return judged, values


def pair_accuracy(pairs: Sequence[PreferencePair], values: Mapping[tuple[str, str], float]) -> float:
    """Share of pairs whose chosen response has the strictly larger true value; nan without pairs.

    ``values[(match_id, player)]``: the true value of that player's response in that match.
    """
    if not pairs:
        return math.nan
    right = sum(values[p.match_id, p.chosen_model] > values[p.match_id, p.rejected_model] for p in pairs)
    return right / len(pairs)


def simulate(plan: PlanConfig, rate: RateConfig, sim: SimConfig, seed: int) -> SimRun:
    """Run ``sim.iterations`` simulated iterations of the method with settings ``plan`` and ``rate``."""
    if seed < 0:
        raise ValueError(f"seed {seed} must be >= 0")
    players = [f"p{i}" for i in range(sim.players)]
    index = {p: i for i, p in enumerate(players)}
    quality = np.array(sim.qualities(seed), dtype=float)
    offsets = np.random.default_rng([seed, _SETUP, 0]).normal(0.0, sim.prompt_std, sim.prompt_pool)
    setup = _judge_setup(sim, seed)
    table: RatingTable = {
        p: PlayerRating(rating=rate.initial_rating, deviation=rate.initial_deviation) for p in players
    }
    history: list[dict[str, float]] = []
    run = SimRun(players=players, metrics=[], ratings=[], qualities=[])
    for t in range(sim.iterations):
        chosen = sample_prompts(sim.prompt_pool, plan.num_prompts, seed, t, plan.prompts)
        prompts = [(f"x{i}", f"x{i}") for i in chosen]
        start = {p: r.rating for p, r in table.items()}
        matches = plan_matches(prompts, players, start, plan, seed, t)
        judged, values = judge_iteration(
            sim,
            seed,
            t,
            [
                (
                    mt.match_id,
                    (index[mt.players[0]], index[mt.players[1]]),
                    float(offsets[int(mt.prompt_id[1:])]),
                )
                for mt in matches
            ],
            players,
            quality,
            setup,
        )
        result = rate_iteration(judged, table, history, rate, t)
        table = result.ratings
        final = [table[p].rating for p in players]
        history.append(dict(zip(players, final, strict=True)))
        accuracy = pair_accuracy(result.pairs, values)
        run.qualities.append([float(q) for q in quality])
        run.ratings.append(history[-1])
        run.metrics.append(
            {
                "spearman": spearman(final, list(quality)),
                "pair_accuracy": accuracy,
                "pairs": float(len(result.pairs)),
                "floor": float(sum(r < rate.floor + FLOOR_BAND for r in final)),
                "weight_ratio": max(final) / min(final),
                "herfindahl": herfindahl(final),
                "rating_min": min(final),
                "rating_max": max(final),
                "mean_quality": float(quality.mean()),
            }
        )
        if sim.learn_rate and not math.isnan(accuracy):
            quality = quality + sim.learn_rate * (accuracy - 0.5)
    return run
