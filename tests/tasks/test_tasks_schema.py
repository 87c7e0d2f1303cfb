"""The canonical example record, split files with file:line errors, and located source records."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from sparta_hpc.errors import TaskDataError
from sparta_hpc.tasks.schema import TaskExample, file_split, read_source_records, read_split, split_name
from tests.tasks.task_fixtures import line_of, write_json, write_lines

FULL = TaskExample(
    id="medqa/test/4", prompt="Which drug?", answer="B", choices=("Aspirin", "Heparin"), metadata={"n": 1}
)


def test_round_trip_and_defaults() -> None:
    d = FULL.to_dict()
    assert d == {
        "id": "medqa/test/4",
        "prompt": "Which drug?",
        "answer": "B",
        "choices": ["Aspirin", "Heparin"],
        "metadata": {"n": 1},
    }
    assert TaskExample.from_dict(json.loads(json.dumps(d))) == FULL
    assert TaskExample.from_dict({"id": "x", "prompt": "p"}) == TaskExample(id="x", prompt="p")


@pytest.mark.parametrize(
    ("record", "message"),
    [
        ({"id": "x"}, "missing keys \\['prompt'\\]"),
        ({"id": "x", "prompt": "p", "gold": 1}, "unknown keys \\['gold'\\]"),
        ({"id": "", "prompt": "p"}, "id must be a non-empty string"),
        ({"id": "x", "prompt": "  "}, "prompt must be a non-empty string"),
        ({"id": "x", "prompt": "p", "answer": 3}, "answer must be a string or null"),
        ({"id": "x", "prompt": "p", "answer": "C", "choices": ["a", "b"]}, "not an option letter A-B"),
        ({"id": "x", "prompt": "p", "choices": "ab"}, "choices must be a list"),
        ({"id": "x", "prompt": "p", "metadata": [1]}, "metadata must be an object"),
        ([1, 2], "expected a JSON object"),
    ],
)
def test_from_dict_rejects(record: object, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        TaskExample.from_dict(record)  # type: ignore[arg-type]


def test_read_split_names_file_and_line(tmp_path: Path) -> None:
    good = json.dumps(FULL.to_dict())
    path = tmp_path / "val.jsonl"
    path.write_text(f"{good}\n\n{{broken\n", encoding="utf-8")
    with pytest.raises(TaskDataError, match=f"{path}:3: not valid JSON"):
        read_split(path)
    path.write_text(f"{good}\n{json.dumps({'id': 'y'})}\n", encoding="utf-8")
    with pytest.raises(TaskDataError, match=f"{path}:2: missing keys"):
        read_split(path)
    path.write_text(f"{good}\n{good}\n", encoding="utf-8")
    with pytest.raises(TaskDataError, match=f"{path}:2: duplicate id 'medqa/test/4'"):
        read_split(path)
    path.write_text(f"{good}\n\n", encoding="utf-8")
    assert read_split(path) == [FULL]


@pytest.mark.parametrize(
    ("name", "split"),
    [("train", "train"), ("data_train", "train"), ("KC_train_knowledge", "train"), ("test", "test"),
     ("test_by_difficulty", "test"), ("dev", "valid"), ("validation", "valid"), ("country_value_dataset",
     "country_value_dataset"), ("latest", "latest")],
)  # fmt: skip
def test_split_name(name: str, split: str) -> None:
    assert split_name(name) == split


def test_file_split_looks_at_folders_only_below_the_root(tmp_path: Path) -> None:
    root = tmp_path / "test_area" / "data"
    assert file_split(root / "MATH/test_by_difficulty/easy.jsonl", root) == "test"
    assert file_split(root / "MATH/train_by_difficulty/easy.jsonl", root) == "train"
    assert file_split(root / "gsm8k/questions.json", root) == "train"  # "test_area" is above the root
    assert file_split(root / "medqa/dev.jsonl") == "valid"


def test_json_list_records_start_lines(tmp_path: Path) -> None:
    path = write_json(tmp_path / "questions.json", [{"input": "a"}, {"input": "b\nc"}, {"input": "d"}])
    records = read_source_records(path)
    assert [(r.line, r.key, r.split, r.value["input"]) for r in records] == [
        (2, "questions-0", "train", "a"),
        (5, "questions-1", "train", "b\nc"),
        (8, "questions-2", "train", "d"),
    ]


def test_json_split_object_records(tmp_path: Path) -> None:
    compact = '{"train": {"7": {"x": 1}, "9": {"x": 2}},\n "test": [\n{"x": 3}]}'
    path = tmp_path / "culture.json"
    path.write_text(compact, encoding="utf-8")
    records = read_source_records(path)
    assert [(r.split, r.key, r.line, r.value) for r in records] == [
        ("train", "7", 1, {"x": 1}),
        ("train", "9", 1, {"x": 2}),
        ("test", "0", 3, {"x": 3}),
    ]
    pretty = write_json(tmp_path / "pretty.json", {"valid": {"a": {"x": 1}, "b": {"x": 2}}})
    assert [(r.split, r.line) for r in read_source_records(pretty)] == [("valid", 3), ("valid", 6)]
    assert line_of(pretty, '"x": 2') == 6


def test_jsonl_keeps_malformed_lines_as_errors(tmp_path: Path) -> None:
    path = write_lines(tmp_path / "data_test.jsonl", [{"q": 1}, "{oops", "", {"q": 2}])
    records = read_source_records(path)
    assert [(r.line, r.split, r.error is None) for r in records] == [
        (1, "test", True),
        (2, "test", False),
        (4, "test", True),
    ]
    assert records[1].error is not None and records[1].error.startswith("not valid JSON")


@pytest.mark.parametrize(
    ("text", "message"),
    [("[1, 2", ":1: not valid JSON"), ('{"a": 1}', "expected a JSON list"), ("3", "expected a JSON list")],
)
def test_unreadable_json_files(tmp_path: Path, text: str, message: str) -> None:
    path = tmp_path / "bad.json"
    path.write_text(text, encoding="utf-8")
    with pytest.raises(TaskDataError, match=message):
        read_source_records(path)
