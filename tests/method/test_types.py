"""The JSON form of the method records and the checks done when they are built."""

import json
import math

import pytest

from sparta_hpc.method.types import JudgedMatch, Match, PlayerRating, PreferencePair


def judged_dict(**changes: object) -> dict[str, object]:
    d: dict[str, object] = {
        "match_id": "t000-m000001",
        "prompt": "Why?",
        "players": ["a", "b"],
        "responses": ["because", "no"],
        "judgments": {"c": [7, 3.5], "d": [None, 4], "e": None},
    }
    return d | changes


def test_judged_match_round_trip_through_json() -> None:
    m = JudgedMatch.from_dict(judged_dict())
    assert m.judgments == {"c": (7.0, 3.5), "d": (None, 4.0), "e": None}
    assert m.players == ("a", "b") and m.responses == ("because", "no")
    again = JudgedMatch.from_dict(json.loads(json.dumps(m.to_dict())))
    assert again == m


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"extra": 1}, "unknown keys \\['extra'\\]"),
        ({"players": ["a"]}, "'players' must be a list of two str"),
        ({"players": ["a", 3]}, "'players' must be a list of two str"),
        ({"players": ["a", "a"]}, "both players are 'a'"),
        ({"responses": "ab"}, "'responses' must be a list of two"),
        ({"judgments": {"a": [1, 2]}}, "judge 'a' is also a player"),
        ({"judgments": {"c": [11, 2]}}, "outside \\[0, 10\\]"),
        ({"judgments": {"c": [-0.5, 2]}}, "outside \\[0, 10\\]"),
        ({"judgments": {"c": [float("nan"), 2]}}, "outside \\[0, 10\\]"),
        ({"judgments": {"c": [True, 2]}}, "score must be a number or null"),
        ({"judgments": {"c": ["7", 2]}}, "score must be a number or null"),
        ({"judgments": {"c": [1, 2, 3]}}, "must be a list of two"),
        ({"judgments": [["c", 1, 2]]}, "'judgments' must be an object"),
    ],
)
def test_judged_match_rejects(changes: dict[str, object], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        JudgedMatch.from_dict(judged_dict(**changes))


def test_missing_key_is_named() -> None:
    d = judged_dict()
    del d["responses"]
    with pytest.raises(ValueError, match="missing keys \\['responses'\\]"):
        JudgedMatch.from_dict(d)


def test_player_rating_round_trip_and_checks() -> None:
    r = PlayerRating.from_dict({"rating": 101.5, "deviation": 0.3})
    assert r.deltas == () and PlayerRating.from_dict(r.to_dict()) == r
    for bad in ({"rating": math.inf, "deviation": 0.5}, {"rating": 100, "deviation": 0}):
        with pytest.raises(ValueError, match="finite rating and a deviation > 0"):
            PlayerRating.from_dict(bad)


def test_match_and_pair_round_trip() -> None:
    m = Match(match_id="x", iteration=1, index=0, prompt_id="p", prompt="q", players=("a", "b"))
    assert Match.from_dict(json.loads(json.dumps(m.to_dict()))) == m
    pair = PreferencePair(
        match_id="x",
        prompt="q",
        chosen="y1",
        rejected="y2",
        chosen_model="a",
        rejected_model="b",
        margin=0.5,
        score_chosen=7.0,
        score_rejected=6.5,
    )
    assert PreferencePair.from_dict(json.loads(json.dumps(pair.to_dict()))) == pair
