"""Settings of the pure method: every switch of spec sections 3-6 as an ordinary field.

These dataclasses are embedded unchanged in the OmegaConf schema (``sparta_hpc.config``), so a field here is a
config key (``plan.alpha``, ``rate.gain`` ...). Validation lives in ``__post_init__`` and names the key.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any


def _choice(key: str, value: Any, allowed: tuple[str, ...]) -> None:
    if value not in allowed:
        raise ValueError(f"{key}={value!r} is not valid; allowed values: {', '.join(allowed)}")


def _at_least(key: str, value: float, low: float) -> None:
    if value < low:
        raise ValueError(f"{key}={value!r} must be >= {low}")


@dataclass
class PlanConfig:
    """Prompt sampling and match-making (spec sections 2.1 and 3)."""

    num_prompts: int = 1000
    """N, prompts (= matches) per iteration."""
    prompts: str = "resample"
    """Which prompts: ``resample``: a new sample each iteration (seed from run seed and t); ``fixed``: the
    same sample, in the same order, every iteration (released code). Who plays them is ``plan.schedule``."""
    schedule: str = "resample"
    """Who plays each prompt. ``resample``: new draws each iteration (seed from run seed and t). ``fixed``:
    every iteration replays iteration 0's draws (the released code re-seeds with 42 before the same draws), so
    these repeat: the first player at every match position, whether its opponent is drawn uniformly or from
    the k nearest, and a uniformly drawn opponent. A nearest-k opponent can change: the same draw picks from
    the k nearest by the ratings at the start of the iteration (with ``pairing=random`` every pair repeats).
    Under ``prompts=fixed`` (released) position i holds the same prompt every iteration, so each prompt keeps
    its first player; under ``prompts=resample`` new prompts fill the positions."""
    pairing: str = "reputation"
    """``reputation``: the alpha / k rule below (paper); ``random``: the opponent is always uniform over the
    other players (the "random pairing" ablation; the same draws and matches as ``alpha=1``)."""
    alpha: float = 0.6
    """Probability that the opponent is drawn uniformly from all other players."""
    k: int = 5
    """Otherwise the opponent is drawn uniformly from the k players nearest in reputation."""

    def __post_init__(self) -> None:
        _at_least("plan.num_prompts", self.num_prompts, 1)
        _choice("plan.prompts", self.prompts, ("resample", "fixed"))
        _choice("plan.schedule", self.schedule, ("resample", "fixed"))
        _choice("plan.pairing", self.pairing, ("reputation", "random"))
        if not 0.0 <= self.alpha <= 1.0:
            raise ValueError(f"plan.alpha={self.alpha!r} must be in [0, 1]")
        _at_least("plan.k", self.k, 1)


@dataclass
class RateConfig:
    """Reputation update and preference selection (spec sections 4-6)."""

    initial_rating: float = 100.0
    """R of every player before iteration 0."""
    initial_deviation: float = 0.5
    """sigma of every player before iteration 0."""
    gain: str = "constant"
    """``constant``: G = kappa (paper); ``schedule``: G_n = max(k_min, k0 * decay^(n/step)) / c (released)."""
    kappa: float = 1.0
    """Constant gain."""
    k0: float = 10.0
    """Released schedule: K_0."""
    k_min: float = 5.0
    """Released schedule: K_min."""
    decay: float = 0.9
    """Released schedule: d."""
    step: float = 10.0
    """Released schedule: s."""
    c: float = 20.0
    """Released schedule: divisor c."""
    aggregation: str = "reputation"
    """Judge weights R_k in the rating update's D and the preference pairs' S: ``reputation``: the judge's
    current rating (paper and released); ``uniform``: 1 for every counted judge (a plain mean; ablation)."""
    weights: str = "normal"
    """Competitor weights w: ``normal`` (w = 1), ``static`` or ``dynamic`` (released variants). These two need
    the end-of-iteration rating history and act from 0-based iteration t = 2, frozen from t = 8 on at t = 7's
    (``method.ratings.competitor_weights``). Released dynamic also used ``c = 10``."""
    eps: float = 0.01
    """Lower bound of the erf factor g."""
    floor: float = 10.0
    """Ratings never go below this."""
    sigma_floor: float = 0.1
    """Deviations never go below this."""
    window: int = 10
    """Number of recent rating deltas kept to compute sigma."""
    keep_deltas: bool = True
    """Carry the delta history between iterations (paper); ``false`` resets it each iteration (released)."""
    failed_judgment: str = "exclude"
    """``exclude``: a judge with a failed parse is left out and counted (paper); ``neutral``: it scores 5 vs 5
    with full weight (released)."""
    min_margin: float = 0.0
    """Drop preference pairs whose margin is below this (0 keeps every non-tie)."""

    def __post_init__(self) -> None:
        _choice("rate.gain", self.gain, ("constant", "schedule"))
        _choice("rate.aggregation", self.aggregation, ("reputation", "uniform"))
        _choice("rate.weights", self.weights, ("normal", "static", "dynamic"))
        _choice("rate.failed_judgment", self.failed_judgment, ("exclude", "neutral"))
        _at_least("rate.window", self.window, 2)
        _at_least("rate.min_margin", self.min_margin, 0.0)
        for key in ("initial_rating", "initial_deviation", "eps", "floor", "sigma_floor", "c", "step"):
            if getattr(self, key) <= 0:
                raise ValueError(f"rate.{key}={getattr(self, key)!r} must be > 0")


PROFILES: dict[str, dict[str, Any]] = {
    "paper": {
        "plan.prompts": "resample",
        "plan.schedule": "resample",
        "rate.gain": "constant",
        "rate.weights": "normal",
        "rate.failed_judgment": "exclude",
        "rate.keep_deltas": True,
        "judge.max_prompt_tokens": None,
        "judge.rubric": "default",
    },
    "released": {
        "plan.prompts": "fixed",
        "plan.schedule": "fixed",
        "rate.gain": "schedule",
        "rate.weights": "static",
        "rate.failed_judgment": "neutral",
        "rate.keep_deltas": False,
        "judge.max_prompt_tokens": 512,
        "judge.rubric": "released",
        "train.max_prompt_tokens": 256,
    },
}
"""Named presets of ordinary config keys (spec section 9); a profile only sets defaults."""
