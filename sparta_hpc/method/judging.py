"""Pointwise judging (spec section 4): the judge prompt, the released score parser, failed judgments."""

from __future__ import annotations

import json
import re
from collections.abc import Mapping, Sequence

from sparta_hpc.method.types import Score

SCORE_PREFIX = '{"score": '
"""Where the logprob judge's answer starts: the next token is the score."""
NEUTRAL_SCORE = 5.0
"""The score both responses get from a failed judgment under ``rate.failed_judgment=neutral``."""

_PROMPT = """You are grading one answer to a question.

Question:
{question}

Answer to grade:
{response}

Grade how well the answer serves the question: correctness, helpfulness and clarity. Give a whole number \
from 1 (useless) to 10 (excellent). Reply with a JSON object and nothing else, {reply}"""
RUBRICS = {
    "default": 'in this form: {"score": N}, where N is your grade.',
    "released": 'like this: {"score": 7}',
}
"""How the judge prompt (``judge.rubric``) ends: the format with a placeholder, or with an example score."""

_PATTERNS = tuple(
    re.compile(p, re.IGNORECASE)
    for p in (
        r'{\s*"score"\s*:\s*(\d+)\s*}',
        r'"score"\s*:\s*(\d+)',
        r"score\s*[:=]\s*(\d+)",
        r"Score:\s*(\d+)",
        r"(\d+)\s*/\s*10",
    )
)
_NOT_JSON = object()


def judge_prompt(question: str, response: str, rubric: str = "default") -> str:
    """The user message asking a judge to score ONE response to ``question`` as ``{"score": N}``, N 1..10.

    ``rubric`` (``RUBRICS``): ``default`` shows the format without a number, ``released`` an example score."""
    return _PROMPT.format(question=question, response=response, reply=RUBRICS[rubric])


def judges_for(players: Sequence[str], match_players: tuple[str, str]) -> list[str]:
    """Every player of the pool except the two competitors, in pool order."""
    return [p for p in players if p not in match_players]


def parse_score(text: str | None) -> int | None:
    """The released parser (``Judge.extract_single_score``); ``None`` is a failed parse.

    (a) the stripped text parses as a JSON object with a number ``score`` in [0, 10]: ``int(score)``;
    other JSON that Python's ``'score' in value`` would reject (numbers, null, booleans) or that contains
    "score" without being an object (a string or list) fails, as the released code's TypeError does.
    (b) else the first match in [1, 10] of the patterns, in order, case-insensitive; (c) else ``None``.
    """
    if text is None:
        return None
    text = text.strip()
    try:
        data = json.loads(text)
    except json.JSONDecodeError:
        data = _NOT_JSON
    except (ValueError, RecursionError):  # e.g. an integer too long to convert
        return None
    if isinstance(data, dict):
        score = data.get("score")
        if isinstance(score, int | float) and 0 <= score <= 10:
            return int(score)
    elif isinstance(data, str | list):
        if "score" in data:
            return None
    elif data is not _NOT_JSON:
        return None
    for pattern in _PATTERNS:
        for found in pattern.findall(text):
            try:
                score = int(found)
            except ValueError:  # more digits than int() accepts
                continue
            if 1 <= score <= 10:
                return score
    return None


def counted_scores(
    judgments: Mapping[str, tuple[Score, Score] | None], failed_judgment: str
) -> list[tuple[str, float, float]]:
    """``(judge, s_a, s_b)`` of the judges that count, sorted by judge name.

    A crashed judge (``None``) never counts. A judgment with a failed score is left out (``exclude``) or
    counts as 5 vs 5 with full weight (``neutral``, the released code).
    """
    out = []
    for judge in sorted(judgments):
        scores = judgments[judge]
        if scores is None:
            continue
        sa, sb = scores
        if sa is not None and sb is not None:
            out.append((judge, sa, sb))
        elif failed_judgment == "neutral":
            out.append((judge, NEUTRAL_SCORE, NEUTRAL_SCORE))
    return out
