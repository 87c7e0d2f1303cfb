"""The canonical task format and the readers that keep every record's file and line.

A prepared task is a folder ``<task>/{train,val,test}.jsonl``, one ``TaskExample.to_dict()`` per line
(documented in docs/formats.md, "Task data"). ``read_source_records`` reads the authors' released JSON/JSONL
shapes and remembers where each record starts, so a bad record is reported as ``path:line``.
"""

from __future__ import annotations

import bisect
import json
import re
import string
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from sparta_hpc.errors import TaskDataError
from sparta_hpc.files import BadLine, jsonl_lines

TASK_NAMES = (
    "medqa",
    "normad_country",
    "normad_value",
    "normad_rot",
    "gsm8k",
    "kcross",
    "com2",
    "math_easy",
    "math_medium",
    "math_hard",
    "alpaca",
    "truthfulqa",
)
"""Tasks that ``prepare-data`` converts (spec section 8)."""
SYNTHETIC = "synthetic"
"""The built-in arithmetic task of the CPU demo (no source file)."""
SPLITS = ("train", "val", "test")
MAX_LINE_BYTES = 1 << 20
"""Longest line of a canonical split file, i.e. one example, in bytes (1 MiB; the newline not counted)."""
LETTERS = string.ascii_uppercase
"""Option letters: ``choices[i]`` is option ``LETTERS[i]``."""


@dataclass(frozen=True, kw_only=True)
class TaskExample:
    """One question of a task: what is asked, the gold answer and, for multiple choice, the options."""

    id: str
    """Unique within the task and stable across reruns: ``<task>/<source split>/<key in the source>``."""
    prompt: str
    """The question text as the source gives it; prompt templates (``prompts.py``) wrap it."""
    answer: str | None = None
    """Gold answer: a number (GSM8K), LaTeX (MATH), an option letter, ``yes``/``no``/``neutral`` (Normad), a
    gold string (COM2), a reference output (Alpaca); ``None`` when the source has none."""
    choices: tuple[str, ...] = ()
    """Option texts of a multiple-choice question, in letter order; empty otherwise."""
    metadata: dict[str, Any] = field(default_factory=dict)
    """Task-specific extras (MATH level and subject, ``choices_in_prompt`` ...); JSON values only."""

    KEYS = ("id", "prompt", "answer", "choices", "metadata")

    def __post_init__(self) -> None:
        if not isinstance(self.id, str) or not self.id:
            raise ValueError(f"id must be a non-empty string, got {self.id!r}")
        if not isinstance(self.prompt, str) or not self.prompt.strip():
            raise ValueError(f"{self.id}: prompt must be a non-empty string")
        if self.answer is not None and not isinstance(self.answer, str):
            raise ValueError(f"{self.id}: answer must be a string or null, got {self.answer!r}")
        if not isinstance(self.choices, tuple) or not all(isinstance(c, str) for c in self.choices):
            raise ValueError(f"{self.id}: choices must be a tuple of strings")
        if len(self.choices) > len(LETTERS):
            raise ValueError(f"{self.id}: {len(self.choices)} choices; at most {len(LETTERS)} (A-Z)")
        if self.choices and self.answer is not None and self.answer not in LETTERS[: len(self.choices)]:
            last = LETTERS[len(self.choices) - 1]
            raise ValueError(f"{self.id}: answer {self.answer!r} is not an option letter A-{last}")
        if not isinstance(self.metadata, dict):
            raise ValueError(f"{self.id}: metadata must be an object")

    def to_dict(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "prompt": self.prompt,
            "answer": self.answer,
            "choices": list(self.choices),
            "metadata": dict(self.metadata),
        }

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> TaskExample:
        """Inverse of ``to_dict``; ``answer``, ``choices`` and ``metadata`` may be left out."""
        if not isinstance(d, dict):
            raise ValueError(f"expected a JSON object, got {type(d).__name__}")
        unknown = sorted(set(d) - set(cls.KEYS))
        missing = [k for k in ("id", "prompt") if k not in d]
        if unknown or missing:
            raise ValueError(f"missing keys {missing}, unknown keys {unknown} (valid keys: {list(cls.KEYS)})")
        choices = d.get("choices") or []
        if not isinstance(choices, list):
            raise ValueError(f"choices must be a list, got {type(choices).__name__}")
        return cls(
            id=d["id"],
            prompt=d["prompt"],
            answer=d.get("answer"),
            choices=tuple(choices),
            metadata=d.get("metadata") or {},
        )


def read_split(path: str | Path) -> list[TaskExample]:
    """All examples of one canonical split file; a bad line raises TaskDataError naming ``path:line``: not
    UTF-8, a byte order mark, longer than ``MAX_LINE_BYTES``, not JSON, not a valid example, a duplicate id.
    A file that cannot be opened raises TaskDataError naming it."""
    path = Path(path)
    examples: list[TaskExample] = []
    seen: set[str] = set()
    try:
        for lineno, value in jsonl_lines(path, error=TaskDataError, max_bytes=MAX_LINE_BYTES):
            try:
                example = TaskExample.from_dict(value)
            except ValueError as e:
                raise TaskDataError(f"{path}:{lineno}: {e}") from None
            if example.id in seen:
                raise TaskDataError(f"{path}:{lineno}: duplicate id {example.id!r}")
            seen.add(example.id)
            examples.append(example)
    except OSError as e:
        raise TaskDataError(f"{path}: cannot read: {e.strerror or e}") from None
    return examples


def read_task(task_dir: str | Path) -> dict[str, list[TaskExample]]:
    """The three splits of a prepared task folder (``train``, ``val``, ``test``)."""
    return {split: read_split(Path(task_dir) / f"{split}.jsonl") for split in SPLITS}


@dataclass(frozen=True, kw_only=True)
class SourceRecord:
    """One record of a source file (or hub dataset) and where it starts."""

    where: str
    """File path, or ``hf:<dataset>[/<config>]:<split>`` for a hub row."""
    line: int
    """1-based line of the record's start (hub rows: 1-based row number)."""
    split: str
    """Source split: ``train``, ``test``, ``valid`` or the source's own name."""
    key: str
    """Unique within the source: the record's key in a JSON object, else its position."""
    value: Any = None
    """The decoded record (normally a dict); ``None`` when ``error`` is set."""
    error: str | None = None
    """Why the record could not be decoded (a malformed JSONL line)."""


def split_name(name: str) -> str:
    """Map a source's split or file name to ``train``, ``test`` or ``valid`` (unknown names unchanged)."""
    tokens = set(re.split(r"[^a-z0-9]+", name.lower()))
    if "test" in tokens:
        return "test"
    if tokens & {"dev", "val", "valid", "validation"}:
        return "valid"
    if "train" in tokens:
        return "train"
    return name


def file_split(path: Path, root: Path | None = None) -> str:
    """Split of a file without split keys inside: from its name, then from the names of its folders below
    ``root`` (``MATH/test_by_difficulty/easy.jsonl`` is test), else train."""
    folders = path.resolve().parent.relative_to(root.resolve()).parts if root is not None else ()
    for name in (path.stem, *reversed(folders)):
        split = split_name(name)
        if split in ("train", "test", "valid"):
            return split
    return "train"


def read_source_records(path: str | Path, root: Path | None = None) -> list[SourceRecord]:
    """Records of a released file: JSONL, a JSON list, or a JSON object ``{split: list | {key: record}}``.
    ``root``: the data folder the file was found in (its folder names may give the split)."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as e:
        raise TaskDataError(f"{path}: cannot read: {e}") from None
    if path.suffix == ".jsonl":
        return _jsonl_records(path, text, file_split(path, root))
    try:
        top = json.loads(text)
    except json.JSONDecodeError as e:
        raise TaskDataError(f"{path}:{e.lineno}: not valid JSON: {e.msg}") from None
    lines = _LineIndex(text)
    start = len(text) - len(text.lstrip())
    if isinstance(top, list):
        return [
            SourceRecord(
                where=str(path),
                line=lines(pos),
                split=file_split(path, root),
                key=f"{path.stem}-{i}",
                value=v,
            )
            for i, pos, v in _members(text, start)
        ]
    if isinstance(top, dict) and top and all(isinstance(v, list | dict) for v in top.values()):
        records = []
        for name, pos, _ in _members(text, start):
            records += [
                SourceRecord(where=str(path), line=lines(p), split=split_name(str(name)), key=str(k), value=v)
                for k, p, v in _members(text, pos)
            ]
        return records
    raise TaskDataError(f"{path}: expected a JSON list of records or an object {{split: records}}")


def _jsonl_records(path: Path, text: str, split: str) -> list[SourceRecord]:
    records = []
    for lineno, value in jsonl_lines(path, lines=text.splitlines(), keep_bad=True):
        bad = value if isinstance(value, BadLine) else None
        records.append(
            SourceRecord(
                where=str(path),
                line=lineno,
                split=split,
                key=f"{path.stem}-{lineno}",
                value=None if bad else value,
                error=bad.error if bad else None,
            )
        )
    return records


class _LineIndex:
    """Maps a character offset of a text to its 1-based line number."""

    def __init__(self, text: str) -> None:
        self._newlines = [m.start() for m in re.finditer("\n", text)]

    def __call__(self, offset: int) -> int:
        return bisect.bisect_left(self._newlines, offset) + 1


_DECODER = json.JSONDecoder()
_SPACE = re.compile(r"\s*")


def _skip_space(text: str, pos: int) -> int:
    match = _SPACE.match(text, pos)
    assert match is not None  # r"\s*" matches everywhere
    return match.end()


def _members(text: str, pos: int) -> list[tuple[str | int, int, Any]]:
    """(key or index, start offset, value) of each member of the valid JSON container at ``text[pos]``."""
    closing = "}" if text[pos] == "{" else "]"
    pos = _skip_space(text, pos + 1)
    members: list[tuple[str | int, int, Any]] = []
    while text[pos] != closing:
        key: str | int = len(members)
        if closing == "}":
            key, pos = _DECODER.raw_decode(text, pos)
            pos = _skip_space(text, _skip_space(text, pos) + 1)  # past the ':'
        value, end = _DECODER.raw_decode(text, pos)
        members.append((key, pos, value))
        pos = _skip_space(text, end)
        if text[pos] == ",":
            pos = _skip_space(text, pos + 1)
    return members
