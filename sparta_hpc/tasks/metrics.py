"""Answer extraction and scoring per task. Pure functions: no I/O, no torch.

Every ``extract_*`` returns the answer it found in a model output, or ``None`` for an output without a usable
answer (which scores 0). ``score(task, output, example)`` dispatches on the task name.
"""

from __future__ import annotations

import math
import re
import string
from collections import Counter
from collections.abc import Sequence
from decimal import Decimal, InvalidOperation
from fractions import Fraction

from sparta_hpc.tasks.schema import LETTERS, TaskExample

# ---- numbers (GSM8K, synthetic) ----

_NUMBER = re.compile(r"(?<![\w.])([-−]?)\$?([-−]?)((?:\d{1,3}(?:,\d{3})+|\d+)(?:\.\d+)?|\.\d+)")
_ANSWER_MARKER = re.compile(r"(?i)\b(?:final answer|answer)\b\s*(?:is|:|=)?")


def _numbers(text: str) -> list[str]:
    """Every number in ``text``, normalised: no commas or ``$``, canonical decimal form, ASCII minus."""
    found = []
    for m in _NUMBER.finditer(text):
        sign = "-" if (m.group(1) or m.group(2)) else ""
        try:
            value = Decimal(sign + m.group(3).replace(",", ""))
        except InvalidOperation:  # pragma: no cover - the pattern only matches decimals
            continue
        found.append(format(value.normalize(), "f") if value != 0 else "0")
    return found


def extract_number(text: str) -> str | None:
    """The final number of an output: after the last ``####``, else after the last "answer is" / "Answer:",
    else in the last ``\\boxed{}``, else the last number of the text."""
    if "####" in text:
        found = _numbers(text.rsplit("####", 1)[1])
        if found:
            return found[0]
    markers = list(_ANSWER_MARKER.finditer(text))
    if markers:
        found = _numbers(text[markers[-1].end() :])
        if found:
            return found[0]
    boxed = extract_boxed(text)
    if boxed is not None and _numbers(boxed):
        return _numbers(boxed)[-1]
    found = _numbers(text)
    return found[-1] if found else None


def numbers_equal(a: str | None, b: str | None) -> bool:
    """Numeric equality of two extracted numbers (``"3.50" == "3.5"``); ``None`` equals nothing."""
    if a is None or b is None:
        return False
    try:
        return Decimal(a) == Decimal(b)
    except InvalidOperation:
        return False


# ---- MATH ----


def extract_boxed(text: str) -> str | None:
    """Content of the last ``\\boxed{...}`` or ``\\fbox{...}`` (braces balanced); ``\\boxed 5`` -> ``5``."""
    start, command = max((text.rfind(c), c) for c in ("\\boxed", "\\fbox"))
    if start < 0:
        return None
    pos = start + len(command)
    while pos < len(text) and text[pos] == " ":
        pos += 1
    if pos >= len(text):
        return None
    if text[pos] != "{":
        token = re.match(r"[^\s$]+", text[pos:])
        return token.group(0) if token else None
    depth = 0
    for i in range(pos, len(text)):
        depth += {"{": 1, "}": -1}.get(text[i], 0)
        if depth == 0:
            return text[pos + 1 : i].strip()
    return None


_FINAL_MARKER = re.compile(r"(?i)\b(?:final answer|answer)\b\s*(?:is|:)?\s*:?\s*")


def extract_math_answer(text: str) -> str | None:
    """The final answer of a MATH solution: the last ``\\boxed{}``, else what follows the last "answer is"."""
    boxed = extract_boxed(text)
    if boxed is not None:
        return boxed or None
    markers = list(_FINAL_MARKER.finditer(text))
    if not markers:
        return None
    rest = text[markers[-1].end() :].strip()
    if rest.startswith("$"):
        inner = rest[1:].lstrip("$")
        answer = inner.split("$", 1)[0]
    else:
        answer = re.split(r"\n|\.\s|\.$", rest, maxsplit=1)[0]
    answer = answer.strip().rstrip(".").strip()
    return answer or None


_TEXT_CMD = r"\\(?:text|textbf|textrm|mbox|mathrm|mathbf)\s*\{([^{}]*)\}"


def normalize_math(answer: str) -> str:
    """A canonical string for simple LaTeX answers: no ``$``, spacing commands, units, ``\\left``, degrees or
    percent signs; ``\\dfrac`` -> ``\\frac``; ``\\frac12`` -> ``\\frac{1}{2}``; ``x = 2`` -> ``2``."""
    s = answer.strip()
    s = re.sub(r"^\\\(|\\\)$|^\\\[|\\\]$", "", s).strip()
    s = re.sub(r"\\(?:left|right|displaystyle)(?![A-Za-z])", "", s)
    s = re.sub(r"\\[!,;:]|\\ |~", "", s)
    s = re.sub(r"\\[dt]frac", r"\\frac", s)
    s = re.sub(r"\^\s*\{?\s*\\circ\s*\}?|°", "", s)
    s = s.replace("\\%", "").replace("%", "").replace("\\$", "").replace("$", "")
    s = re.sub(r"^(.*\d)\s*" + _TEXT_CMD + r"\s*(\^\s*\{?\d\}?)?$", r"\1", s)  # trailing units
    s = re.sub(_TEXT_CMD, r"\1", s)
    s = re.sub(r"^[A-Za-z]\s*=\s*", "", s)
    s = re.sub(r"\\frac\s*(\d)\s*(\d)", r"\\frac{\1}{\2}", s)
    s = re.sub(r"\\frac\s*\{([^{}]*)\}\s*(\d)", r"\\frac{\1}{\2}", s)
    s = re.sub(r"\\frac\s*(\d)\s*\{", r"\\frac{\1}{", s)
    s = re.sub(r"\\sqrt\s*(\d)", r"\\sqrt{\1}", s)
    s = re.sub(r"\s+", "", s).rstrip(".")
    s = re.sub(r"(?<![\d}])\.(\d)", r"0.\1", s)
    if re.fullmatch(r"-?\d{1,3}(,\d{3})+(\.\d+)?", s):
        s = s.replace(",", "")
    return s


def _as_fraction(s: str) -> Fraction | None:
    m = re.fullmatch(r"(-?)\\frac\{(-?\d+)\}\{(-?\d+)\}", s) or re.fullmatch(r"(-?)(-?\d+)/(-?\d+)", s)
    try:
        if m:
            value = Fraction(int(m.group(2)), int(m.group(3)))
            return -value if m.group(1) else value
        if re.fullmatch(r"-?\d+(\.\d+)?", s):
            return Fraction(s)
    except (ValueError, ZeroDivisionError):
        return None
    return None


def math_equal(prediction: str | None, gold: str | None) -> bool:
    """Equivalence of two final answers after ``normalize_math``: same string, same number (``0.5`` ==
    ``\\frac{1}{2}``), or tuples/intervals whose parts are equivalent."""
    if prediction is None or gold is None:
        return False
    a, b = normalize_math(prediction), normalize_math(gold)
    if not a or not b:
        return False
    if a == b:
        return True
    fa, fb = _as_fraction(a), _as_fraction(b)
    if fa is not None and fb is not None:
        return fa == fb
    if a[0] + a[-1] == b[0] + b[-1] and a[0] in "([" and a[-1] in ")]":
        parts_a, parts_b = _top_level_parts(a[1:-1]), _top_level_parts(b[1:-1])
        return len(parts_a) == len(parts_b) > 1 and all(map(math_equal, parts_a, parts_b))
    return False


def _top_level_parts(s: str) -> list[str]:
    """``s`` cut at the commas outside any brackets or braces."""
    parts, depth, start = [], 0, 0
    for i, ch in enumerate(s):
        depth += (ch in "([{") - (ch in ")]}")
        if ch == "," and depth == 0:
            parts.append(s[start:i])
            start = i + 1
    return [*parts, s[start:]]


# ---- multiple choice (MedQA, KCross, TruthfulQA) ----

_CHOICE_MARKER = re.compile(
    r"(?i:\b(?:answer|option|choice)\b)\s*(?i:is|:)?\s*(?i:option|choice)?\s*[:\-]?\s*[\(\[]?([A-Z])[\)\]]?(?![\w'])"
)


def _norm_words(text: str) -> str:
    return " ".join(re.sub(r"[^\w\s]", " ", text.lower()).split())


def extract_choice(text: str, num_choices: int = 4, choices: Sequence[str] = ()) -> str | None:
    """The option letter an output picks, or ``None`` (no letter, a letter past ``num_choices``, ambiguous).

    Tried in order: the last "answer is X" / "Answer: (X)"; a reply that is only a letter; a reply starting
    with "X." or "(X)"; a single distinct "(X)" anywhere; the one option text the reply contains."""
    valid = LETTERS[:num_choices]
    clean = text.replace("*", "").strip()
    for m in reversed(list(_CHOICE_MARKER.finditer(clean))):
        if m.group(1) in valid:
            return m.group(1)
    whole = re.fullmatch(r"[\(\[]?([A-Za-z])[\)\].:]?", clean)
    if whole:
        letter = whole.group(1).upper()
        return letter if letter in valid else None
    bracketed = set(re.findall(r"\(([A-Z])\)", clean))
    leading = re.match(r"[\(\[]?([A-Z])[\)\].:](?:\s|$)", clean)
    if leading and not bracketed - {leading.group(1)}:
        return leading.group(1) if leading.group(1) in valid else None
    if len(bracketed) == 1:
        letter = bracketed.pop()
        return letter if letter in valid else None
    said = _norm_words(clean)
    hits = [
        LETTERS[i] for i, c in enumerate(choices[:num_choices]) if _norm_words(c) and _norm_words(c) in said
    ]
    return hits[0] if len(hits) == 1 else None


# ---- Normad ----

_LABEL_MARKER = re.compile(
    r"(?i)\b(?:answer|verdict|label|judge?ment)\b\s*(?:is|:)?\s*[:\-]?\s*\W*(yes|no|neutral)\b"
)


def extract_label(text: str) -> str | None:
    """``yes``, ``no`` or ``neutral``: after the last "Answer:", else the reply's first word, else the only
    label word the reply uses; ``None`` when absent or ambiguous."""
    markers = _LABEL_MARKER.findall(text)
    if markers:
        return markers[-1].lower()
    first = re.match(r"\W*(yes|no|neutral)\b", text, re.IGNORECASE)
    if first:
        return first.group(1).lower()
    used = {w.lower() for w in re.findall(r"\b(yes|no|neutral)\b", text, re.IGNORECASE)}
    return used.pop() if len(used) == 1 else None


# ---- COM2 (gold string) ----

_COM2_MARKER = re.compile(r"(?i)\banswer\b\s*(?:is)?\s*:?")


def normalize_text(text: str) -> str:
    """Lower case, no punctuation, no articles, single spaces."""
    text = "".join(" " if ch in string.punctuation else ch for ch in text.lower())
    return " ".join(w for w in text.split() if w not in ("a", "an", "the"))


def extract_short_answer(text: str) -> str | None:
    """The short answer of a reply: the rest of the line after the last "answer is", else the first line."""
    markers = list(_COM2_MARKER.finditer(text))
    rest = text[markers[-1].end() :] if markers else text
    lines = [line.strip() for line in rest.strip().splitlines() if line.strip()]
    if not lines:
        return None
    answer = lines[0].strip(" \"'*`").rstrip(".!").strip()
    return answer or None


def token_f1(prediction: str, gold: str) -> float:
    """Token-overlap F1 of two strings after ``normalize_text`` (a softer COM2 score; not the default)."""
    pred, ref = normalize_text(prediction).split(), normalize_text(gold).split()
    common = sum((Counter(pred) & Counter(ref)).values())
    if common == 0:
        return 0.0
    precision, recall = common / len(pred), common / len(ref)
    return 2 * precision * recall / (precision + recall)


# ---- Alpaca (LLM judge) ----


def judge_score(score: float | None, low: float = 1.0, high: float = 10.0) -> float | None:
    """An Alpaca metric value from a judge score already obtained: the score itself, checked to lie in
    ``[low, high]``; ``None`` (a failed judgment) stays ``None`` so the caller can exclude it."""
    if score is None:
        return None
    if isinstance(score, bool) or not isinstance(score, int | float) or math.isnan(score):
        raise ValueError(f"judge score must be a number, got {score!r}")
    if not low <= score <= high:
        raise ValueError(f"judge score {score} is outside [{low}, {high}]")
    return float(score)


# ---- dispatch ----


def extract(task: str, output: str, example: TaskExample) -> str | None:
    """The answer that ``score`` compares with ``example.answer``."""
    if task in ("gsm8k", "synthetic"):
        return extract_number(output)
    if task.startswith("math_"):
        return extract_math_answer(output)
    if task in ("medqa", "kcross", "truthfulqa"):
        return extract_choice(output, len(example.choices) or 4, example.choices)
    if task.startswith("normad_"):
        return extract_label(output)
    if task == "com2":
        return extract_short_answer(output)
    if task == "alpaca":
        raise ValueError("alpaca is scored by an LLM judge: pass the judge's score to metrics.judge_score")
    raise ValueError(f"unknown task {task!r}")


def score(task: str, output: str, example: TaskExample) -> float:
    """1.0 if the output's answer matches the example's gold answer, else 0.0."""
    if task != "alpaca" and example.answer is None:
        raise ValueError(f"{example.id}: no gold answer to score against (the source file has none)")
    found = extract(task, output, example)
    if found is None:
        return 0.0
    gold = example.answer
    if task in ("gsm8k", "synthetic"):
        return float(numbers_equal(found, gold))
    if task.startswith("math_"):
        return float(math_equal(found, gold))
    if task == "com2":
        return float(normalize_text(found) == normalize_text(gold or ""))
    return float(found == gold)


# ---- tasks of your own (``task.metric``, ``task.answer_pattern``) ----


def extract_custom(metric: str, pattern: str | None, output: str, example: TaskExample) -> str | None:
    """The answer of a task of your own: the last match of ``pattern`` (its group 1 if it has groups), else
    the metric's extractor: ``numeric`` the final number, ``choice`` the option letter, ``exact`` and ``f1``
    the short answer (the line after the last "answer is", else the first line)."""
    if metric == "judge":
        return None
    if pattern is not None:
        matches = list(re.finditer(pattern, output))
        if not matches:
            return None
        found = (matches[-1].group(1) if matches[-1].re.groups else matches[-1].group(0)) or ""
        found = found.strip()
        return (found.upper() if metric == "choice" else found) or None
    if metric == "numeric":
        return extract_number(output)
    if metric == "choice":
        return extract_choice(output, len(example.choices) or 4, example.choices)
    return extract_short_answer(output)


def score_custom(metric: str, pattern: str | None, output: str, example: TaskExample) -> float:
    """The metric of a task of your own against ``example.answer``: 1.0 / 0.0, or token F1 in [0, 1]."""
    if metric == "judge":
        raise ValueError("metric judge is scored by eval.judge_model: pass its score to metrics.judge_score")
    if example.answer is None:
        raise ValueError(f"{example.id}: no gold answer to score against (the source file has none)")
    found = extract_custom(metric, pattern, output, example)
    if found is None:
        return 0.0
    if metric == "numeric":
        found_number = extract_number(found)
        return float(numbers_equal(found_number, extract_number(example.answer)))
    if metric == "f1":
        return token_f1(found, example.answer)
    if metric == "choice":
        return float(found == example.answer)
    return float(normalize_text(found) == normalize_text(example.answer))
