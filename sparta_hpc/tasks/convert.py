"""Sources of task examples: one small converter per released record shape, the Hugging Face hub loader, and
the built-in synthetic task.

A converter turns one source record (a dict) into a ``TaskExample``; it raises ``SourceRecordError`` for a bad
record (missing field, empty prompt, unknown label) and returns ``None`` for a record of another task's
subset (a MATH level outside the task's range). ``convert_records`` applies one to every record of a source
and keeps the bad ones, with their file and line, next to the converted ones.
"""

from __future__ import annotations

import random
import re
import zlib
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from typing import Any

from sparta_hpc.errors import TaskDataError
from sparta_hpc.tasks.metrics import extract_boxed, extract_number
from sparta_hpc.tasks.schema import LETTERS, SourceRecord, TaskExample, split_name


class SourceRecordError(ValueError):
    """One source record cannot be converted; the message says why."""


Converter = Callable[[str, dict[str, Any], str], TaskExample | None]
"""(task, record, example id) -> example, or None for a record outside the task's subset."""


def _optional(record: dict[str, Any], *names: str) -> str | None:
    """The first of ``names`` present (and not null) in the record, as a non-empty string."""
    for name in names:
        value = record.get(name)
        if value is None:
            continue
        if not isinstance(value, str):
            raise SourceRecordError(f"field {name!r} is a {type(value).__name__}, not a string")
        if not value.strip():
            raise SourceRecordError(f"empty {name!r}")
        return value
    return None


def _required(record: dict[str, Any], *names: str) -> str:
    """Like ``_optional``, but a record without any of ``names`` is bad."""
    value = _optional(record, *names)
    if value is None:
        raise SourceRecordError(f"missing field {names[0]!r}")
    return value


def gsm8k_record(task: str, record: dict[str, Any], example_id: str) -> TaskExample:
    """Released ``{instruction, input}`` (no gold) or hub ``{question, answer: "...#### 72"}``."""
    prompt = _required(record, "input", "question")
    gold = _optional(record, "answer", "output")
    answer = extract_number(gold) if gold is not None else None
    if gold is not None and answer is None:
        raise SourceRecordError(f"answer {gold[-40:]!r} has no final number")
    metadata = {"instruction": record["instruction"]} if isinstance(record.get("instruction"), str) else {}
    return TaskExample(id=example_id, prompt=prompt, answer=answer, metadata=metadata)


MATH_LEVELS = {"math_easy": (1, 2), "math_medium": (3,), "math_hard": (4, 5)}
"""Spec section 8: easy = levels 1-2, medium = level 3, hard = levels 4-5."""


def math_record(task: str, record: dict[str, Any], example_id: str) -> TaskExample | None:
    """``{problem, level: "Level 2", type, solution, answer}``; no answer: the solution's ``\\boxed{}``."""
    prompt = _required(record, "problem")
    level_text = _required(record, "level")
    level = re.fullmatch(r"\s*(?:Level\s*)?([1-5])\s*", level_text)
    if level is None:
        raise SourceRecordError(f"unknown level {level_text!r} (expected 'Level 1' to 'Level 5')")
    if int(level.group(1)) not in MATH_LEVELS[task]:
        return None
    answer = _optional(record, "answer")
    solution = _optional(record, "solution")
    if answer is None and solution is not None:
        answer = extract_boxed(solution)
        if not answer:
            raise SourceRecordError("no 'answer' field and no \\boxed{} answer in 'solution'")
    metadata: dict[str, Any] = {"level": int(level.group(1))}
    if isinstance(record.get("type"), str):
        metadata["subject"] = record["type"]
    return TaskExample(id=example_id, prompt=prompt, answer=answer, metadata=metadata)


def com2_record(task: str, record: dict[str, Any], example_id: str) -> TaskExample:
    """``{prompt, gold}`` (and an optional ``datasplit``, used as the record's split)."""
    return TaskExample(id=example_id, prompt=_required(record, "prompt"), answer=_required(record, "gold"))


NORMAD_LABELS = ("yes", "no", "neutral")


def normad_record(task: str, record: dict[str, Any], example_id: str) -> TaskExample:
    """``{instruction, label}`` with label yes / no / neutral (any case)."""
    prompt = _required(record, "instruction")
    label = _required(record, "label").strip().lower()
    if label not in NORMAD_LABELS:
        raise SourceRecordError(
            f"unknown label {record['label']!r} (expected one of {', '.join(NORMAD_LABELS)})"
        )
    return TaskExample(id=example_id, prompt=prompt, answer=label)


_OPTION_LINE = re.compile(r"^([A-Z])\.\s+(.*\S)\s*$", re.MULTILINE)


def _options_in_text(text: str) -> tuple[str, ...]:
    """Option texts listed in a question as lines ``A. ...``, ``B. ...`` (consecutive from A), else ()."""
    options: list[str] = []
    for letter, body in _OPTION_LINE.findall(text):
        if letter == LETTERS[len(options)]:
            options.append(body)
    return tuple(options) if len(options) >= 2 else ()


def kcross_record(task: str, record: dict[str, Any], example_id: str) -> TaskExample:
    """``{prompt, completion}``: the options are listed inside the prompt, completion is their letter."""
    prompt = _required(record, "prompt")
    letter = _required(record, "completion").strip().rstrip(".").strip("()").upper()
    choices = _options_in_text(prompt)
    if letter not in LETTERS[: len(choices) or 4] or len(letter) != 1:
        raise SourceRecordError(f"unknown label {record['completion']!r} (expected an option letter)")
    metadata = {"choices_in_prompt": True} if choices else {}
    return TaskExample(id=example_id, prompt=prompt, answer=letter, choices=choices, metadata=metadata)


def truthfulqa_record(task: str, record: dict[str, Any], example_id: str) -> TaskExample:
    """Released ``{question}`` lines (prompt only) or hub multiple choice ``{question, mc1_targets}``; the
    hub's options (correct first) are shuffled by a fixed hash of the question."""
    prompt = _required(record, "question", "prompt")
    targets = record.get("mc1_targets")
    if targets is None:
        return TaskExample(id=example_id, prompt=prompt)
    if not isinstance(targets, dict) or not isinstance(targets.get("choices"), list):
        raise SourceRecordError("mc1_targets must be {choices: [...], labels: [...]}")
    pairs = list(zip(targets["choices"], targets.get("labels") or [], strict=False))
    if len(pairs) != len(targets["choices"]) or [label for _, label in pairs].count(1) != 1:
        raise SourceRecordError("mc1_targets needs one label per choice and exactly one label 1")
    random.Random(zlib.crc32(prompt.encode())).shuffle(pairs)
    answer = LETTERS[[label for _, label in pairs].index(1)]
    return TaskExample(id=example_id, prompt=prompt, answer=answer, choices=tuple(str(c) for c, _ in pairs))


def alpaca_record(task: str, record: dict[str, Any], example_id: str) -> TaskExample:
    """``{instruction, input, output}``: prompt = instruction (+ input); answer = the reference output."""
    prompt = _required(record, "instruction")
    extra = record.get("input")
    if isinstance(extra, str) and extra.strip():
        prompt = f"{prompt}\n\n{extra}"
    output = record.get("output")
    answer = output if isinstance(output, str) and output.strip() else None
    return TaskExample(id=example_id, prompt=prompt, answer=answer)


def medqa_record(task: str, record: dict[str, Any], example_id: str) -> TaskExample:
    """MedQA-USMLE ``{question, options: {A: ..., B: ...}, answer_idx}`` (or ``answer`` = an option text)."""
    prompt = _required(record, "question")
    options = record.get("options")
    if isinstance(options, dict):
        letters = sorted(options)
        if letters != list(LETTERS[: len(letters)]):
            raise SourceRecordError(f"option keys {letters} are not A, B, C ...")
        choices = tuple(str(options[k]) for k in letters)
    elif isinstance(options, list):
        choices = tuple(str(o) for o in options)
    else:
        raise SourceRecordError("missing field 'options'")
    answer = (_optional(record, "answer_idx") or "").strip().upper()
    if not answer and isinstance(record.get("answer"), str) and record["answer"] in choices:
        answer = LETTERS[choices.index(record["answer"])]
    if answer not in LETTERS[: len(choices)] or len(answer) != 1 or len(choices) < 2:
        raise SourceRecordError(
            f"unknown label {record.get('answer_idx', record.get('answer'))!r} for {len(choices)} options"
        )
    return TaskExample(id=example_id, prompt=prompt, answer=answer, choices=choices)


CONVERTERS: dict[str, Converter] = {
    "medqa": medqa_record,
    "normad_country": normad_record,
    "normad_value": normad_record,
    "normad_rot": normad_record,
    "gsm8k": gsm8k_record,
    "kcross": kcross_record,
    "com2": com2_record,
    "math_easy": math_record,
    "math_medium": math_record,
    "math_hard": math_record,
    "alpaca": alpaca_record,
    "truthfulqa": truthfulqa_record,
}


@dataclass(frozen=True, kw_only=True)
class BadRecord:
    """A source record that was not converted, and why."""

    where: str
    line: int
    reason: str

    def __str__(self) -> str:
        return f"{self.where}:{self.line}: {self.reason}"


@dataclass
class Converted:
    """Examples of one task by source split, the bad records, and how many records belong to other subsets."""

    by_split: dict[str, list[TaskExample]] = field(default_factory=dict)
    bad: list[BadRecord] = field(default_factory=list)
    num_other_subset: int = 0


def convert_records(task: str, records: Iterable[SourceRecord], into: Converted | None = None) -> Converted:
    """Convert every record with the task's converter; a record's ``datasplit`` field overrides its split."""
    convert = CONVERTERS[task]
    out = into if into is not None else Converted()
    seen = {ex.id for examples in out.by_split.values() for ex in examples}
    for r in records:
        reason = r.error or (None if isinstance(r.value, dict) else "record is not a JSON object")
        if reason is None:
            declared = r.value.get("datasplit")
            split = split_name(declared) if isinstance(declared, str) and declared.strip() else r.split
            example_id = f"{task}/{split}/{r.key}"
            try:
                example = convert(task, r.value, example_id)
            except (SourceRecordError, ValueError) as e:
                reason = str(e)
            else:
                if example is None:
                    out.num_other_subset += 1
                    continue
                if example_id in seen:
                    reason = f"duplicate id {example_id!r}"
                else:
                    seen.add(example_id)
                    out.by_split.setdefault(split, []).append(example)
                    continue
        out.bad.append(BadRecord(where=r.where, line=r.line, reason=reason))
    return out


_MATH_HUB = ("EleutherAI/hendrycks_math", ("algebra", "counting_and_probability", "geometry",
             "intermediate_algebra", "number_theory", "prealgebra", "precalculus"))  # fmt: skip
HUB_DATASETS: dict[str, tuple[str, tuple[str | None, ...]]] = {
    "gsm8k": ("openai/gsm8k", ("main",)),
    "math_easy": _MATH_HUB,
    "math_medium": _MATH_HUB,
    "math_hard": _MATH_HUB,
    "medqa": ("GBaker/MedQA-USMLE-4-options", (None,)),
    "truthfulqa": ("truthfulqa/truthful_qa", ("multiple_choice",)),
    "alpaca": ("tatsu-lab/alpaca", (None,)),
}
"""Default hub dataset and configs per task; Normad, KCross and COM2 need ``hf:<dataset>`` named explicitly
(their rows must then have the released fields)."""


def hub_records(task: str, spec: str = "") -> Iterator[SourceRecord]:
    """Rows of a Hugging Face dataset via ``datasets.load_dataset``. ``spec`` is ``<dataset>[:<config>]``
    (a hub name or a local folder), empty for the task's default in ``HUB_DATASETS``."""
    import datasets  # heavy; only when the hub is used

    if spec:
        name, _, config = spec.partition(":")
        configs: tuple[str | None, ...] = (config or None,)
    elif task in HUB_DATASETS:
        name, configs = HUB_DATASETS[task]
    else:
        raise ValueError(f"no default hub dataset for {task!r}; pass --source hf:<dataset>[:<config>]")
    for subset in configs:
        try:
            parts = datasets.load_dataset(name, subset)
        except datasets.exceptions.DatasetsError as e:  # the OSError / ValueError kinds pass through
            raise TaskDataError(f"hf:{name}: {e}") from None
        for hub_split, rows in parts.items():
            where = f"hf:{name}{'/' + subset if subset else ''}:{hub_split}"
            prefix = f"{subset}-" if len(configs) > 1 else ""
            for i, row in enumerate(rows):
                yield SourceRecord(
                    where=where, line=i + 1, split=split_name(hub_split), key=f"{prefix}{i}", value=row
                )


def synthetic_task(num_train: int, num_val: int, num_test: int, seed: int) -> dict[str, list[TaskExample]]:
    """Distinct arithmetic questions ("What is 7 + 5? Answer with the number."), deterministic from ``seed``;
    splits are drawn in order train, val, test, so the train split does not depend on the other sizes."""
    sizes = {"train": num_train, "val": num_val, "test": num_test}
    if any(not isinstance(n, int) or n < 0 for n in sizes.values()):
        raise ValueError(f"split sizes must be non-negative integers, got {sizes}")
    if sum(sizes.values()) > 10_000:
        raise ValueError(f"at most 10000 synthetic questions, asked for {sum(sizes.values())}")
    rng = random.Random(seed)
    seen: set[str] = set()
    task: dict[str, list[TaskExample]] = {}
    for split, size in sizes.items():
        task[split] = []
        while len(task[split]) < size:
            op = rng.choice("+-*")
            a, b = (
                (rng.randint(2, 12), rng.randint(2, 12))
                if op == "*"
                else (rng.randint(1, 99), rng.randint(1, 99))
            )
            a, b = (max(a, b), min(a, b)) if op == "-" else (a, b)
            prompt = f"What is {a} {op} {b}? Answer with the number."
            if prompt in seen:
                continue
            seen.add(prompt)
            value = a + b if op == "+" else a - b if op == "-" else a * b
            example_id = f"synthetic/{split}/{len(task[split])}"
            task[split].append(
                TaskExample(id=example_id, prompt=prompt, answer=str(value), metadata={"op": op})
            )
    return task
