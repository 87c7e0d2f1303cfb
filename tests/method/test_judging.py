"""Judge prompt and the released score parser (spec section 4)."""

import re

import pytest

from sparta_hpc.method.judging import (
    NEUTRAL_SCORE,
    RUBRICS,
    SCORE_PREFIX,
    counted_scores,
    judge_prompt,
    judges_for,
    parse_score,
)

SPEC_VECTORS = [
    ('{"score": 7}', 7),
    ('{"score": 7.5}', 7),
    ('{"score": 0}', 0),
    ("Score: 8", 8),
    ("7/10", 7),
    ("7.5/10", 5),
    ("7", None),
    ('{"score": 11}', None),
    ('{"score": "8"}', None),
]


@pytest.mark.parametrize(("text", "expected"), SPEC_VECTORS)
def test_spec_vectors(text: str, expected: int | None) -> None:
    assert parse_score(text) == expected


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ('  {"score": 9}\n', 9),  # stripped before JSON parsing
        ('{"score": 10.9}', 10),  # int() truncates
        ('{"score": -1}', None),  # out of range and no pattern takes a minus sign
        ('{"score": NaN}', None),  # Python's json accepts NaN; it is not in [0, 10]
        ('{"score": true}', 1),  # a bool is a number to the released isinstance check
        ('{"note": "score: 9"}', 9),  # an object without "score" falls through to the patterns
        ('{"score": 12, "why": "score: 4"}', 4),  # 12 fails patterns 1-2, pattern 3 finds 4
        ('"score: 8"', None),  # a JSON string containing "score": the released code raises -> failure
        ('["score", 8]', None),  # a JSON list containing "score": same
        ('"7/10"', 7),  # a JSON string without "score" falls through to the patterns
        ('["score: 8"]', 8),  # a list without the element "score" falls through to the patterns
        ("null", None),  # non-container JSON: failure
        ("10", None),
        ("SCORE = 6", 6),  # pattern 3, case-insensitive
        ("Score: 0, so 7/10 overall", 7),  # Score: 0 is out of [1, 10]; the next pattern finds 7
        ('I think {"score":3} fits', 3),
        ('{"score": 4} and "score": 9', 4),  # the first pattern wins
        ("12/10 then 3/10", 3),  # out-of-range matches are skipped
        ("", None),
        ("no number here", None),
    ],
)
def test_released_parser_rules(text: str, expected: int | None) -> None:
    assert parse_score(text) == expected


def test_none_and_huge_numbers_fail_cleanly() -> None:
    assert parse_score(None) is None
    assert parse_score("9" * 5000 + "/10") is None  # too many digits for int(): skipped, not a crash
    assert parse_score('{"score": ' + "1" * 5000 + "}") is None


def test_judge_prompt_carries_question_response_and_format() -> None:
    text = judge_prompt("What is 2+2?", "It is 4.")
    assert "What is 2+2?" in text and "It is 4." in text
    assert '{"score": ' in text and "1" in text and "10" in text
    assert text.index("What is 2+2?") < text.index("It is 4.")
    assert judge_prompt("{x}", "{y}").count("{x}") == 1  # braces in user text are not format fields
    assert SCORE_PREFIX == '{"score": '


def test_judges_for_excludes_both_competitors_in_pool_order() -> None:
    assert judges_for(["a", "b", "c", "d", "e"], ("d", "b")) == ["a", "c", "e"]


def test_counted_scores_switch() -> None:
    judgments = {"z": (8.0, 6.0), "y": (None, 9.0), "x": None, "w": (3.0, None), "v": (1.0, 2.0)}
    assert counted_scores(judgments, "exclude") == [("v", 1.0, 2.0), ("z", 8.0, 6.0)]
    assert counted_scores(judgments, "neutral") == [
        ("v", 1.0, 2.0),
        ("w", NEUTRAL_SCORE, NEUTRAL_SCORE),
        ("y", NEUTRAL_SCORE, NEUTRAL_SCORE),
        ("z", 8.0, 6.0),
    ]
    assert NEUTRAL_SCORE == 5.0


RELEASED_PROMPT = """You are grading one answer to a question.

Question:
What is 2+2?

Answer to grade:
It is 4.

Grade how well the answer serves the question: correctness, helpfulness and clarity. Give a whole number \
from 1 (useless) to 10 (excellent). Reply with a JSON object and nothing else, like this: {"score": 7}"""


def test_default_rubric_shows_the_format_without_a_score() -> None:
    text = judge_prompt("What is 2+2?", "It is 4.")
    assert text == judge_prompt("What is 2+2?", "It is 4.", "default")
    instruction = text[text.index("It is 4.") + len("It is 4.") :]
    reply = instruction[instruction.index("Reply with") :]
    assert '{"score": N}' in reply and not re.search(r"\d", reply)  # no number a judge could copy
    assert text.endswith(
        'Reply with a JSON object and nothing else, in this form: {"score": N}, where N is your grade.'
    )


def test_released_rubric_is_the_former_wording_with_an_example_score() -> None:
    assert judge_prompt("What is 2+2?", "It is 4.", "released") == RELEASED_PROMPT
    assert set(RUBRICS) == {"default", "released"}
    with pytest.raises(KeyError):
        judge_prompt("q", "r", "terse")


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ('{"score": 8}', 8),
        ('{"score": 8}\nThe answer is correct and clear.', 8),
        ('```json\n{"score": 6}\n```', 6),
        ('{"score": 9, "reason": "correct"}', 9),
        ('{"score": N}', None),  # the placeholder copied: no grade, a failed judgment, never a made-up 7
        ('{"score": N}, where N is your grade.', None),
        ('{"score": <8>}', None),  # so the placeholder is N, not <...>: the parser cannot read <8>
    ],
)
def test_answers_to_the_default_rubric_parse(text: str, expected: int | None) -> None:
    assert parse_score(text) == expected
