"""The evaluate stage: held-out task scores of every player after chosen iterations (spec section 8).

Light at import (no torch): the launcher plans evaluation units here; ``jobs.evaluate_shard`` runs them.
"""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass
class EvalConfig:
    """When and on what the players are evaluated."""

    every: int = 1
    """Evaluate after every ``every``-th iteration (and the last one); 0 turns evaluation off."""
    splits: list[str] = field(default_factory=lambda: ["val", "test"])
    """Splits of the task to evaluate on."""

    def __post_init__(self) -> None:
        if self.every < 0:
            raise ValueError(f"eval.every={self.every} must be >= 0 (0 turns evaluation off)")
        bad = [s for s in self.splits if s not in ("val", "test")]
        if bad:
            raise ValueError(f"eval.splits has {bad}; allowed values: val, test")


def due(every: int, t: int, iterations: int) -> bool:
    """Whether iteration t is followed by an evaluation."""
    return every > 0 and ((t + 1) % every == 0 or t == iterations - 1)
