"""Typed records of one SPARTA iteration and their stable JSON form.

Every stage writes these records and every tool reads them, so the dict form of each (``to_dict`` /
``from_dict``) is the file format documented in ``docs/formats.md``. Pure Python: no I/O here.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any, ClassVar

Score = float | None
"""A judge's score of one response; ``None`` is a failed parse, never a silent default."""


def _require(d: dict[str, Any], keys: tuple[str, ...], kind: str) -> None:
    """Raise ValueError naming unknown and missing keys of a record dict."""
    bad = (("missing", [k for k in keys if k not in d]), ("unknown", sorted(set(d) - set(keys))))
    if bad[0][1] or bad[1][1]:
        parts = "; ".join(f"{what} keys {names}" for what, names in bad if names)
        raise ValueError(f"{kind}: {parts} (valid keys: {list(keys)})")


def _json_form(record: Any) -> dict[str, Any]:
    """``{key: value}`` of a record's ``KEYS`` in that order, tuples as lists: its JSON form."""
    values = {k: getattr(record, k) for k in record.KEYS}
    return {k: list(v) if isinstance(v, tuple) else v for k, v in values.items()}


@dataclass(frozen=True, kw_only=True)
class Match:
    """One combat: players a and b both answer ``prompt``; ``index`` is the order of rating updates."""

    match_id: str
    iteration: int
    index: int
    prompt_id: str
    prompt: str
    players: tuple[str, str]

    KEYS = ("match_id", "iteration", "index", "prompt_id", "prompt", "players")

    to_dict = _json_form

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> Match:
        _require(d, cls.KEYS, "match")
        a, b = d["players"]
        text = {k: str(d[k]) for k in ("match_id", "prompt_id", "prompt")}
        return cls(**text, iteration=int(d["iteration"]), index=int(d["index"]), players=(str(a), str(b)))


@dataclass(frozen=True, kw_only=True)
class Generation:
    """A player's answer to the prompt of one match."""

    match_id: str
    player: str
    response: str
    num_tokens: int

    KEYS = ("match_id", "player", "response", "num_tokens")

    to_dict = _json_form

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> Generation:
        _require(d, cls.KEYS, "generation")
        text = {k: str(d[k]) for k in ("match_id", "player", "response")}
        return cls(**text, num_tokens=int(d["num_tokens"]))


@dataclass(frozen=True, kw_only=True)
class Judgment:
    """One judge's pointwise scores of both responses of a match (``raw``: its outputs, empty for logprob)."""

    match_id: str
    judge: str
    scores: tuple[Score, Score]
    raw: tuple[str, str] = ("", "")

    KEYS = ("match_id", "judge", "scores", "raw")

    @property
    def usable(self) -> bool:
        """Both responses got a score."""
        return self.scores[0] is not None and self.scores[1] is not None

    to_dict = _json_form

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> Judgment:
        _require(d, cls.KEYS, "judgment")
        (sa, sb), (ra, rb) = d["scores"], d["raw"]
        text = {k: str(d[k]) for k in ("match_id", "judge")}
        return cls(**text, scores=(_score(sa), _score(sb)), raw=(str(ra), str(rb)))


def _score(x: Any) -> Score:
    if x is None:
        return None
    if isinstance(x, bool) or not isinstance(x, int | float):
        raise ValueError(f"score must be a number or null, got {x!r}")
    return float(x)


@dataclass(frozen=True, kw_only=True)
class JudgedMatch:
    """A match with both responses and every judge's scores: the input of the rating update.

    ``judgments[judge]`` is ``(score_a, score_b)``; either score may be ``None`` (failed parse), and a
    judge that crashed maps to ``None`` as a whole.
    """

    match_id: str
    prompt: str
    players: tuple[str, str]
    responses: tuple[str, str]
    judgments: dict[str, tuple[Score, Score] | None] = field(default_factory=dict)

    KEYS = ("match_id", "prompt", "players", "responses", "judgments")

    def __post_init__(self) -> None:
        if self.players[0] == self.players[1]:
            raise ValueError(f"match {self.match_id!r}: both players are {self.players[0]!r}")
        for judge, scores in self.judgments.items():
            if judge in self.players:
                raise ValueError(f"match {self.match_id!r}: judge {judge!r} is also a player of the match")
            bad = [s for s in scores or () if s is not None and not 0 <= s <= 10]
            if bad:
                raise ValueError(
                    f"match {self.match_id!r}: judge {judge!r} gave scores {bad} outside [0, 10]"
                )

    def to_dict(self) -> dict[str, Any]:
        judgments = {j: (None if s is None else list(s)) for j, s in sorted(self.judgments.items())}
        return _json_form(self) | {"judgments": judgments}

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> JudgedMatch:
        _require(d, cls.KEYS, "judged match")
        if not isinstance(d["judgments"], dict):
            raise ValueError("judged match: 'judgments' must be an object {judge: [score_a, score_b] | null}")
        judgments: dict[str, tuple[Score, Score] | None] = {}
        for j, s in d["judgments"].items():
            sa, sb = (None, None) if s is None else _two(s, f"judgments[{j!r}]")
            judgments[j] = None if s is None else (_score(sa), _score(sb))
        players, responses = (_two(d[k], k, str) for k in ("players", "responses"))
        text = {k: str(d[k]) for k in ("match_id", "prompt")}
        return cls(**text, players=players, responses=responses, judgments=judgments)


def _two(x: Any, what: str, kind: type = object) -> tuple[Any, Any]:
    """The entries of a JSON list of two ``kind`` values, else a ValueError naming ``what``."""
    if not isinstance(x, list | tuple) or len(x) != 2 or not all(isinstance(v, kind) for v in x):
        raise ValueError(f"judged match: {what!r} must be a list of two {kind.__name__} values, got {x!r}")
    return x[0], x[1]


@dataclass(frozen=True, kw_only=True)
class PlayerRating:
    """A player's reputation R, deviation sigma and recent rating deltas (newest last)."""

    rating: float
    deviation: float
    deltas: tuple[float, ...] = ()

    def __post_init__(self) -> None:
        if not math.isfinite(self.rating) or not (0 < self.deviation < math.inf):
            raise ValueError(f"rating entry: needs a finite rating and a deviation > 0, got {self.to_dict()}")

    def to_dict(self) -> dict[str, Any]:
        return {"rating": self.rating, "deviation": self.deviation, "deltas": list(self.deltas)}

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> PlayerRating:
        if not {"rating", "deviation"} <= set(d) <= {"rating", "deviation", "deltas"}:
            raise ValueError(
                f"rating entry: needs 'rating' and 'deviation' (optional 'deltas'), got keys {sorted(d)}"
            )
        deltas = tuple(float(x) for x in d.get("deltas", []))
        return cls(rating=float(d["rating"]), deviation=float(d["deviation"]), deltas=deltas)


RatingTable = dict[str, PlayerRating]
"""Player name -> rating; the JSON form is ``{name: PlayerRating.to_dict()}``."""


@dataclass(frozen=True, kw_only=True)
class PreferencePair:
    """A DPO preference pair taken from one judged match."""

    match_id: str
    prompt: str
    chosen: str
    rejected: str
    chosen_model: str
    rejected_model: str
    margin: float
    score_chosen: float
    score_rejected: float

    KEYS: ClassVar[tuple[str, ...]] = ("match_id", "prompt", "chosen", "rejected", "chosen_model")
    KEYS += ("rejected_model", "margin", "score_chosen", "score_rejected")

    to_dict = _json_form

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> PreferencePair:
        _require(d, cls.KEYS, "preference pair")
        return cls(**{k: d[k] for k in cls.KEYS})
