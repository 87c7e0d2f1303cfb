"""Released-shape fixture files: a small copy of the released ``data/`` folder with a few bad records."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

KC_PROMPT = (
    "Pick the correct answer for each blank that satisfies all the given constraints.\n"
    "Constraints: (blank 1, actedIn, Film_{n}).\nOptions:\n"
    "Please select the correct answer from A, B, C, D.\n"
    "A. blank 1: Actor_A{n};\nB. blank 1: Actor_B{n};\nC. blank 1: Actor_C{n};\nD. blank 1: Actor_D{n};\n"
)


def normad_item(n: int, label: str) -> dict[str, str]:
    return {
        "instruction": f"### Visiting\n- Rule {n}.\n\nCountry: nepal.\nPlease justify: story {n}. Is it "
        "acceptable?.\n Choose from:'Yes', 'No', 'Neutral'",
        "label": label,
    }


def math_line(n: int, level: str, answer: str | None = "7") -> dict[str, Any]:
    record: dict[str, Any] = {
        "problem": f"Problem {n}: what is $3+4$?",
        "level": level,
        "type": "Algebra",
        "solution": "We add: $3+4=\\boxed{7}$.",
        "id": str(n),
        "category": "algebra",
    }
    if answer is not None:
        record["answer"] = answer
    return record


def write_json(path: Path, value: Any) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(value, indent=2, ensure_ascii=False), encoding="utf-8")
    return path


def write_lines(path: Path, lines: list[Any]) -> Path:
    """JSONL; a str item is written verbatim (a malformed line)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    text = "".join((x if isinstance(x, str) else json.dumps(x)) + "\n" for x in lines)
    path.write_text(text, encoding="utf-8")
    return path


def line_of(path: Path, needle: str) -> int:
    """Line of the ``{`` that opens the record containing ``needle`` (the first occurrence)."""
    text = path.read_text(encoding="utf-8")
    return text[: text.rindex("{", 0, text.index(needle))].count("\n") + 1


@pytest.fixture
def released(tmp_path: Path) -> Path:
    """data/ in the released shapes. Expected canonical counts are in ``EXPECTED`` (test_tasks_prepare)."""
    data = tmp_path / "data"
    gsm = [
        {"instruction": "Solve this math word problem step by step.", "input": f"Q{n}: 2+{n}?"}
        for n in range(4)
    ]
    gsm.insert(2, {"instruction": "Solve this math word problem step by step."})  # bad: no input
    write_json(data / "gsm8k/questions.json", gsm)
    gsm_test = [
        {"question": f"T{n}: 10*{n}?", "answer": f"10*{n} = {10 * n}\n#### {10 * n:,}"} for n in range(4)
    ]
    write_lines(data / "gsm8k/test.jsonl", [*gsm_test, {"question": "T9", "answer": "no number here"}])
    write_lines(
        data / "MATH/train_by_difficulty/easy.jsonl",
        [math_line(1, "Level 1"), math_line(2, "Level 2", None), math_line(3, "Level ?"), '{"problem": "x"'],
    )
    write_lines(
        data / "MATH/train_by_difficulty/medium.jsonl", [math_line(4, "Level 3"), math_line(5, "Level 3")]
    )
    write_lines(data / "MATH/test_by_difficulty/easy.jsonl", [math_line(n, "Level 2") for n in range(6, 9)])
    com2 = [{"prompt": f"Context: c{n}\nThe answer is:\n", "gold": f"g{n}", "datasplit": s} for n, s in
            enumerate(["train", "train", "train", "test", "test", "test"])]  # fmt: skip
    com2.append({"prompt": "Context: no gold\nThe answer is:\n", "datasplit": "train"})  # bad
    write_json(data / "com2/train.json", com2)
    country = {
        "train": {"11": normad_item(11, "yes"), "12": normad_item(12, "maybe"), "13": normad_item(13, "No")},
        "valid": {"21": normad_item(21, "neutral")},
        "test": {str(n): normad_item(n, "no") for n in range(31, 35)},
    }
    write_json(data / "culture/country_dataset.json", country)
    write_json(data / "culture/country_value_dataset.json", country)  # the released quirk: a copy
    write_json(data / "culture/rule_of_thumb_dataset.json", {"train": {"1": normad_item(1, "neutral")}})
    kc = {"train": [{"prompt": KC_PROMPT.format(n=n), "completion": "BCAD"[n]} for n in range(4)]}
    kc["train"][1]["completion"] = "E"  # bad: only four options
    kc["test"] = [{"prompt": KC_PROMPT.format(n=n), "completion": "A"} for n in range(10, 12)]
    write_json(data / "knowledge_crosswords/train.json", kc)
    tqa = [{"question": f"Q: q{n}?\nA: a{n}.\nTrue:\nJustify whether the answer is true?"} for n in range(3)]
    write_lines(data / "truthfulqa/data_train.jsonl", [*tqa, {"question": "  "}])
    write_lines(data / "truthfulqa/data.jsonl", tqa)  # not the task's file: ignored
    alpaca = [
        {"instruction": f"Write {n}.", "input": "" if n else "context", "output": f"out {n}"}
        for n in range(3)
    ]
    write_json(
        data / "alpaca/alpaca_data_processed.json", [*alpaca, {"instruction": "", "input": "", "output": ""}]
    )
    options = {"A": "Aspirin", "B": "Heparin", "C": "Warfarin", "D": "Insulin"}
    med = [{"question": f"Patient {n}?", "options": options, "answer_idx": "ABCD"[n % 4]} for n in range(6)]
    write_lines(data / "medqa/train.jsonl", med[:3])
    write_lines(
        data / "medqa/test.jsonl",
        [*med[3:], {"question": "Patient x?", "options": options, "answer_idx": "F"}],
    )
    return data
