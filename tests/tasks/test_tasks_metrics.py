"""Hand-written tricky outputs for every extractor, right, wrong and malformed."""

from __future__ import annotations

import ast
import math
from pathlib import Path

import pytest

from sparta_hpc.tasks import metrics
from sparta_hpc.tasks.metrics import (
    extract_boxed,
    extract_choice,
    extract_label,
    extract_math_answer,
    extract_number,
    extract_short_answer,
    judge_score,
    math_equal,
    normalize_math,
    numbers_equal,
    token_f1,
)
from sparta_hpc.tasks.schema import TaskExample


@pytest.mark.parametrize(
    ("output", "number"),
    [
        ("Natalia sold 48 + 24 = 72 clips.\n#### 72", "72"),
        ("The answer is 1,234.", "1234"),
        ("She pays $1,234.50 in total.", "1234.5"),
        ("Answer: -$5", "-5"),
        ("The temperature fell to −7 degrees.", "-7"),
        ("10-5=5 so she has 5 left", "5"),
        ("x = -3.0", "-3"),
        ("Answer: 0.50 dollars", "0.5"),
        ("It took .5 hours", "0.5"),
        ("First 18 apples. The answer is 20 apples, costing $40.", "20"),
        ("So the total is \\boxed{42}. Check: 43 - 1 = 42.", "42"),
        ("The answer is 12.\n\nNext: 3 + 4 = 7. The answer is 7", "7"),
        ("Answer: none of them. Earlier I counted 18.", "18"),  # marker without a number: fall back
        ("#### \n", None),  # malformed: empty final line, no number anywhere
        ("I don't know.", None),
        ("", None),
        ("Room 3b is on floor x2", "3"),  # a number glued to a word is not taken
    ],
)
def test_extract_number(output: str, number: str | None) -> None:
    assert extract_number(output) == number


@pytest.mark.parametrize(
    ("a", "b", "equal"),
    [
        ("72", "72.00", True),
        ("-0", "0", True),
        ("1234.5", "1234.50", True),
        ("72", "27", False),
        (None, "1", False),
    ],
)
def test_numbers_equal(a: str | None, b: str, equal: bool) -> None:
    assert numbers_equal(a, b) is equal


@pytest.mark.parametrize(
    ("output", "answer"),
    [
        ("so $x = \\boxed{\\frac{1}{2}}$.", "\\frac{1}{2}"),
        ("first \\boxed{3}, corrected: \\boxed{4}", "4"),
        ("\\boxed{\\left(3, \\frac{\\pi}{2}\\right)}", "\\left(3, \\frac{\\pi}{2}\\right)"),
        ("\\fbox{12}", "12"),
        ("the result is \\boxed 5 apples", "5"),
        ("The final answer is $\\dfrac12$. I hope it is correct.", "\\dfrac12"),
        ("Final Answer: 2\\sqrt{3}\nDone", "2\\sqrt{3}"),
        ("So the answer is 90^\\circ.", "90^\\circ"),
        ("\\boxed{\\frac{1", None),  # unbalanced braces
        ("\\boxed{}", None),  # empty box
        ("I think it is 5", None),  # no box and no marker
        ("", None),
    ],
)
def test_extract_math_answer(output: str, answer: str | None) -> None:
    assert extract_math_answer(output) == answer


def test_extract_boxed_none_without_a_box() -> None:
    assert extract_boxed("no box here") is None
    assert extract_boxed("trailing \\boxed") is None


@pytest.mark.parametrize(
    ("prediction", "gold", "equal"),
    [
        ("\\frac{1}{2}", "0.5", True),
        ("\\dfrac14", "\\frac{1}{4}", True),
        ("\\frac{1}{4}", "1/4", True),
        ("-\\frac{3}{6}", "-0.5", True),
        ("(4, 4)", "(4,4)", True),
        ("(0.5, 2)", "(\\frac12, 2)", True),
        ("2 \\text{ euros}", "2", True),
        ("x = 2", "2", True),
        ("\\!\\sqrt{21}", "\\sqrt{21}", True),
        ("2\\sqrt2", "2\\sqrt{2}", True),
        ("90^\\circ", "90", True),
        ("10\\%", "10", True),
        ("1,000", "1000", True),
        ("\\left[ 1, 3 \\right)", "[1,3)", True),
        ("\\text{(C)}", "(C)", True),
        ("3", "4", False),
        ("(4, 4)", "[4, 4]", False),
        ("\\frac{1}{0}", "1", False),
        ("", "0", False),
        (None, "0", False),
        ("2x+1", "2x + 2", False),
    ],
)
def test_math_equal(prediction: str | None, gold: str, equal: bool) -> None:
    assert math_equal(prediction, gold) is equal


def test_normalize_math_keeps_variables() -> None:
    assert normalize_math("$16x^2 + 4x + 5$") == "16x^2+4x+5"
    assert normalize_math("\\tfrac{a}{b}") == "\\frac{a}{b}"


OPTIONS = ["Aspirin", "Heparin", "Warfarin", "Insulin"]


@pytest.mark.parametrize(
    ("output", "letter"),
    [
        ("The answer is (B).", "B"),
        ("Answer: **D**", "D"),
        ("The correct option is C because it inhibits vitamin K.", "C"),
        ("answer: A\n(earlier I considered (B))", "A"),
        ("B", "B"),
        ("c", "C"),
        ("(A)", "A"),
        ("C. Warfarin, since the patient has AF.", "C"),
        ("I would give heparin right away.", "B"),  # the option text
        ("Options (A) and (C) both look plausible.", None),  # ambiguous
        ("(A) or (B)", None),
        ("Answer: E", None),  # past the four options
        ("E", None),
        ("Answer: I think B", None),  # malformed: "I" is not an option
        ("Aspirin or heparin, hard to say.", None),
        ("No idea.", None),
        ("", None),
    ],
)
def test_extract_choice(output: str, letter: str | None) -> None:
    assert extract_choice(output, 4, OPTIONS) == letter


def test_extract_choice_more_options() -> None:
    assert extract_choice("Answer: (F)", 6) == "F"
    assert extract_choice("Answer: (F)", 4) is None


@pytest.mark.parametrize(
    ("output", "label"),
    [
        ("No, taking the last piece is rude there.", "no"),
        ("**Neutral** - it depends on the host.", "neutral"),
        ("Answer: Yes", "yes"),
        ("Verdict: neutral.", "neutral"),
        ("After thinking it over, the answer is: No.", "no"),
        ('"Yes". She followed the custom.', "yes"),
        ("The behaviour matches the rule, so yes.", "yes"),
        ("YES", "yes"),
        ("Yes and no.", "yes"),  # the reply starts with its verdict
        ("I cannot say yes or no.", None),  # ambiguous
        ("Nope, that is rude.", None),
        ("Not acceptable.", None),
        ("It is socially acceptable.", None),
        ("", None),
    ],
)
def test_extract_label(output: str, label: str | None) -> None:
    assert extract_label(output) == label


@pytest.mark.parametrize(
    ("output", "answer"),
    [
        ("in pain", "in pain"),
        ("in pain.\nBecause he broke his leg.", "in pain"),
        ("The answer is: hides evidence.", "hides evidence"),
        ("Answer: thankful!", "thankful"),
        ('"to talk to Nova"', "to talk to Nova"),
        ("\n\n  Isla sleeps well  \n", "Isla sleeps well"),
        ("**Answer:** to learn to ski", "to learn to ski"),
        ("Reasoning first.\nThe answer is\ndrink", "drink"),
        ("", None),
        ("   \n ", None),
        ("Answer:", None),
    ],
)
def test_extract_short_answer(output: str, answer: str | None) -> None:
    assert extract_short_answer(output) == answer


def test_token_f1() -> None:
    assert token_f1("The dog is in pain", "in pain") == pytest.approx(2 / 3)  # "the" is dropped: P 1/2, R 1
    assert token_f1("happy", "in pain") == 0.0
    assert token_f1("", "pain") == 0.0


@pytest.mark.parametrize(("raw", "value"), [(1, 1.0), (10, 10.0), (7.5, 7.5), (None, None)])
def test_judge_score_accepts(raw: float | None, value: float | None) -> None:
    assert judge_score(raw) == value


@pytest.mark.parametrize("raw", [0, 11, -3, 10.01, math.nan, True, "7"])
def test_judge_score_rejects(raw: object) -> None:
    with pytest.raises(ValueError, match="judge score"):
        judge_score(raw)  # type: ignore[arg-type]


def ex(answer: str | None, choices: tuple[str, ...] = ()) -> TaskExample:
    return TaskExample(id="t/test/1", prompt="q", answer=answer, choices=choices)


@pytest.mark.parametrize(
    ("task", "output", "example", "value"),
    [
        ("gsm8k", "so 3*4 = 12.\n#### 12", ex("12"), 1.0),
        ("gsm8k", "The answer is 13", ex("12"), 0.0),
        ("synthetic", "12.0", ex("12"), 1.0),
        ("math_hard", "\\boxed{\\frac{2}{4}}", ex("\\frac12"), 1.0),
        ("math_easy", "no box", ex("3"), 0.0),
        ("medqa", "Answer: (C)", ex("C", tuple(OPTIONS)), 1.0),
        ("kcross", "Answer: B", ex("C", tuple(OPTIONS)), 0.0),
        ("truthfulqa", "B", ex("B", ("x", "y")), 1.0),
        ("normad_rot", "Neutral.", ex("neutral"), 1.0),
        ("normad_value", "Yes!", ex("no"), 0.0),
        ("com2", "The answer is: In pain.", ex("in pain"), 1.0),
        ("com2", "pain", ex("in pain"), 0.0),
    ],
)
def test_score(task: str, output: str, example: TaskExample, value: float) -> None:
    assert metrics.score(task, output, example) == value


def test_score_refuses_what_it_cannot_score() -> None:
    with pytest.raises(ValueError, match="judge_score"):
        metrics.score("alpaca", "text", ex("ref"))
    with pytest.raises(ValueError, match="no gold answer"):
        metrics.score("truthfulqa", "A", ex(None))
    with pytest.raises(ValueError, match="unknown task"):
        metrics.score("nope", "A", ex("A"))


def test_metrics_module_is_pure() -> None:
    tree = ast.parse(Path(metrics.__file__).read_text(encoding="utf-8"))
    imported = {a.name for n in ast.walk(tree) if isinstance(n, ast.Import) for a in n.names}
    imported |= {n.module for n in ast.walk(tree) if isinstance(n, ast.ImportFrom) and n.module}
    assert not {m.split(".")[0] for m in imported} & {"torch", "os", "io", "pathlib", "shutil", "datasets"}
    calls = {n.func.id for n in ast.walk(tree) if isinstance(n, ast.Call) and isinstance(n.func, ast.Name)}
    assert "open" not in calls
