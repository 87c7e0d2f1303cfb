"""Prompt sampling and match-making (spec sections 2.1 and 3), all from seeded generators.

A generator is ``random.Random`` seeded with a string, which Python hashes with SHA-512 (not ``hash()``), so
the same seed gives the same prompts and matches in every process and on every machine.
"""

from __future__ import annotations

import random
from collections.abc import Mapping, Sequence

from sparta_hpc.method.settings import PlanConfig
from sparta_hpc.method.types import Match


def _rng(*parts: object) -> random.Random:
    return random.Random(":".join(str(p) for p in parts))


def sample_prompts(pool_size: int, num_prompts: int, seed: int | str, iteration: int, mode: str) -> list[int]:
    """Indices of this iteration's prompts in the train pool, drawn without replacement.

    ``fixed``: the same sample, in the same order, in every iteration (released code); ``resample``: a new
    sample per iteration.
    A pool smaller than ``num_prompts`` gives all of its indices, shuffled.
    """
    if mode not in ("fixed", "resample"):
        raise ValueError(f"plan.prompts={mode!r} is not valid; allowed values: fixed, resample")
    rng = _rng("prompts", seed) if mode == "fixed" else _rng("prompts", seed, iteration)
    return rng.sample(range(pool_size), min(num_prompts, pool_size))


def first_players(num_prompts: int, players: Sequence[str], rng: random.Random) -> list[str]:
    """Blocks of m prompts get a random permutation of the m players; the leftover prompts a random player."""
    m = len(players)
    order: list[str] = []
    for _ in range(num_prompts // m):
        order += rng.sample(list(players), m)
    order += [rng.choice(players) for _ in range(num_prompts % m)]
    return order


def pick_opponent(
    a: str, players: Sequence[str], ratings: Mapping[str, float], cfg: PlanConfig, rng: random.Random
) -> str:
    """With probability alpha any other player, else one of the k others nearest to ``a`` in rating.

    Ties in distance keep the order of ``players``. ``pairing=random``: always any other player (after the
    same draw of the branch, so the generator advances as with ``alpha=1``).
    """
    others = [p for p in players if p != a]
    if rng.random() < cfg.alpha or cfg.pairing == "random":
        return rng.choice(others)
    nearest = sorted(others, key=lambda p: abs(ratings[a] - ratings[p]))
    return rng.choice(nearest[: cfg.k])


def plan_matches(
    prompts: Sequence[tuple[str, str]],
    players: Sequence[str],
    ratings: Mapping[str, float],
    cfg: PlanConfig,
    seed: int | str,
    iteration: int,
) -> list[Match]:
    """One match per ``(prompt_id, prompt)``, in prompt order; ``ratings``: those at the iteration start.

    The generator is seeded with ``seed`` and ``iteration``, or with iteration 0 under ``schedule=fixed``.
    """
    if len(players) < 2 or len(set(players)) != len(players) or not all(p in ratings for p in players):
        raise ValueError(f"match-making needs two or more distinct players, all rated; got {list(players)}")
    rng = _rng("plan", seed, 0 if cfg.schedule == "fixed" else iteration)
    firsts = first_players(len(prompts), players, rng)
    return [
        Match(
            match_id=f"t{iteration:03d}-m{index:06d}",
            iteration=iteration,
            index=index,
            prompt_id=prompt_id,
            prompt=prompt,
            players=(a, pick_opponent(a, players, ratings, cfg, rng)),
        )
        for index, ((prompt_id, prompt), a) in enumerate(zip(prompts, firsts, strict=True))
    ]
