"""Each released shape converts with the right examples and splits; bad records keep their file and line."""

from __future__ import annotations

from pathlib import Path

import pytest

from sparta_hpc.errors import TaskDataError
from sparta_hpc.tasks.convert import (
    CONVERTERS,
    Converted,
    SourceRecordError,
    convert_records,
    hub_records,
    synthetic_task,
)
from sparta_hpc.tasks.metrics import score
from sparta_hpc.tasks.schema import TASK_NAMES, read_source_records
from tests.tasks.task_fixtures import line_of, write_json, write_lines


def convert(task: str, *paths: Path) -> Converted:
    """Like prepare-data: files found in the data folder above them (``.../data``) or in tmp_path."""
    out = Converted()
    for path in paths:
        root = next((p for p in path.parents if p.name == "data"), path.parent)
        convert_records(task, read_source_records(path, root), into=out)
    return out


def counts(c: Converted) -> dict[str, int]:
    return {split: len(examples) for split, examples in c.by_split.items()}


def test_every_task_has_a_converter() -> None:
    assert set(CONVERTERS) == set(TASK_NAMES)


def test_gsm8k_released_list_has_no_gold_and_hub_shape_has_a_number(released: Path) -> None:
    questions = released / "gsm8k/questions.json"
    c = convert("gsm8k", questions, released / "gsm8k/test.jsonl")
    assert counts(c) == {"train": 4, "test": 4}
    first = c.by_split["train"][0]
    assert first.prompt == "Q0: 2+0?" and first.answer is None
    assert first.metadata == {"instruction": "Solve this math word problem step by step."}
    assert [ex.answer for ex in c.by_split["test"]] == ["0", "10", "20", "30"]
    assert [str(b) for b in c.bad] == [
        f"{questions}:10: missing field 'input'",  # "[", then two records of 4 lines each
        f"{released / 'gsm8k/test.jsonl'}:5: answer 'no number here' has no final number",
    ]


def test_gsm8k_thousands_gold_is_normalised(tmp_path: Path) -> None:
    path = write_lines(tmp_path / "test.jsonl", [{"question": "q", "answer": "so\n#### 1,250"}])
    (example,) = convert("gsm8k", path).by_split["test"]
    assert example.answer == "1250"
    assert score("gsm8k", "It costs $1,250.00 in total.", example) == 1.0


def test_math_levels_select_the_task_and_the_box_fills_a_missing_answer(released: Path) -> None:
    easy = released / "MATH/train_by_difficulty/easy.jsonl"
    c = convert("math_easy", easy, released / "MATH/test_by_difficulty/easy.jsonl")
    assert counts(c) == {"train": 2, "test": 3}
    assert [ex.answer for ex in c.by_split["train"]] == ["7", "7"]
    assert c.by_split["train"][0].metadata == {"level": 1, "subject": "Algebra"}
    assert [(b.line, b.reason.split(" (")[0]) for b in c.bad] == [
        (3, "unknown level 'Level ?'"),
        (4, "not valid JSON: Expecting ',' delimiter"),
    ]
    hard = convert("math_hard", easy)
    assert hard.by_split == {} and hard.num_other_subset == 2 and len(hard.bad) == 2


def test_com2_datasplit_field_sets_the_split(released: Path) -> None:
    path = released / "com2/train.json"
    c = convert("com2", path)
    assert counts(c) == {"train": 3, "test": 3}
    assert c.by_split["test"][0].answer == "g3"
    assert c.by_split["test"][0].id == "com2/test/train-3"
    assert [str(b) for b in c.bad] == [f"{path}:{line_of(path, 'no gold')}: missing field 'gold'"]


def test_normad_dict_splits_keep_their_ids_and_labels_are_checked(released: Path) -> None:
    path = released / "culture/country_dataset.json"
    c = convert("normad_country", path)
    assert counts(c) == {"train": 2, "valid": 1, "test": 4}
    assert [(ex.id, ex.answer) for ex in c.by_split["train"]] == [
        ("normad_country/train/11", "yes"),
        ("normad_country/train/13", "no"),
    ]
    (bad,) = c.bad
    assert bad.line == line_of(path, "story 12") and "unknown label 'maybe'" in bad.reason


def test_kcross_options_are_parsed_and_a_letter_past_them_is_bad(released: Path) -> None:
    path = released / "knowledge_crosswords/train.json"
    c = convert("kcross", path)
    assert counts(c) == {"train": 3, "test": 2}
    first = c.by_split["train"][0]
    assert first.answer == "B" and first.choices == tuple(f"blank 1: Actor_{x}0;" for x in "ABCD")
    assert first.metadata == {"choices_in_prompt": True}
    (bad,) = c.bad
    assert bad.line == line_of(path, "Film_1)") and "unknown label 'E'" in bad.reason


def test_truthfulqa_released_lines_are_prompt_only(released: Path) -> None:
    path = released / "truthfulqa/data_train.jsonl"
    c = convert("truthfulqa", path)
    assert counts(c) == {"train": 3}
    assert all(ex.answer is None and ex.choices == () for ex in c.by_split["train"])
    assert [str(b) for b in c.bad] == [f"{path}:4: empty 'question'"]


def test_truthfulqa_hub_rows_become_shuffled_choices(tmp_path: Path) -> None:
    row = {
        "question": "Can pigs fly?",
        "mc1_targets": {"choices": ["No", "Yes", "Only at night"], "labels": [1, 0, 0]},
    }
    bad = {"question": "Two true?", "mc1_targets": {"choices": ["a", "b"], "labels": [1, 1]}}
    c = convert("truthfulqa", write_lines(tmp_path / "validation.jsonl", [row, bad]))
    (example,) = c.by_split["valid"]
    assert sorted(example.choices) == ["No", "Only at night", "Yes"]
    assert example.choices[ord(example.answer) - ord("A")] == "No"
    assert convert("truthfulqa", tmp_path / "validation.jsonl").by_split["valid"] == [
        example
    ]  # deterministic
    assert "exactly one label 1" in c.bad[0].reason and c.bad[0].line == 2


def test_alpaca_input_joins_the_instruction(released: Path) -> None:
    path = released / "alpaca/alpaca_data_processed.json"
    c = convert("alpaca", path)
    assert [ex.prompt for ex in c.by_split["train"]] == ["Write 0.\n\ncontext", "Write 1.", "Write 2."]
    assert c.by_split["train"][1].answer == "out 1"
    assert [b.reason for b in c.bad] == ["empty 'instruction'"]


def test_medqa_options_and_answer_letter(released: Path) -> None:
    c = convert("medqa", released / "medqa/train.jsonl", released / "medqa/test.jsonl")
    assert counts(c) == {"train": 3, "test": 3}
    assert c.by_split["train"][1].choices == ("Aspirin", "Heparin", "Warfarin", "Insulin")
    assert c.by_split["train"][1].answer == "B"
    assert [(b.line, b.reason) for b in c.bad] == [(4, "unknown label 'F' for 4 options")]


def test_medqa_answer_text_and_list_options(tmp_path: Path) -> None:
    rec = {"question": "Which?", "options": ["x", "y", "z"], "answer": "z"}
    (example,) = convert("medqa", write_lines(tmp_path / "dev.jsonl", [rec])).by_split["valid"]
    assert example.answer == "C" and example.choices == ("x", "y", "z")


def test_non_object_records_and_wrong_types_are_bad(tmp_path: Path) -> None:
    path = write_json(tmp_path / "questions.json", [["not", "an", "object"], {"input": 42}, {"input": "ok"}])
    c = convert("gsm8k", path)
    assert counts(c) == {"train": 1}
    assert [(b.line, b.reason) for b in c.bad] == [
        (2, "record is not a JSON object"),
        (7, "field 'input' is a int, not a string"),
    ]


def test_converters_raise_record_error_directly() -> None:
    with pytest.raises(SourceRecordError, match="missing field 'problem'"):
        CONVERTERS["math_easy"]("math_easy", {"level": "Level 1"}, "x")


def test_hub_loader_reads_a_local_dataset_folder(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import datasets  # a declared dependency (heavy, so imported here): missing, the test fails, never skips

    monkeypatch.setattr(datasets.config, "HF_DATASETS_CACHE", str(tmp_path / "cache"))
    folder = tmp_path / "gsm8k_hub"
    write_lines(folder / "train.jsonl", [{"question": f"q{n}", "answer": f"#### {n}"} for n in range(3)])
    write_lines(
        folder / "test.jsonl", [{"question": "t", "answer": "#### -4"}, {"question": "", "answer": "#### 1"}]
    )
    records = list(hub_records("gsm8k", str(folder)))
    assert [(r.split, r.line, r.where.rsplit(":", 1)[1]) for r in records][-2:] == [
        ("test", 1, "test"),
        ("test", 2, "test"),
    ]
    c = convert_records("gsm8k", records)
    assert counts(c) == {"train": 3, "test": 1} and c.by_split["test"][0].answer == "-4"
    assert [str(b) for b in c.bad] == [f"hf:{folder}:test:2: empty 'question'"]


def test_hub_loader_reports_a_dataset_it_cannot_build(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import datasets

    monkeypatch.setattr(datasets.config, "HF_DATASETS_CACHE", str(tmp_path / "cache"))
    write_lines(tmp_path / "broken" / "train.jsonl", ['{"question": "q", "answer": "#### 1"}', "{not json"])
    with pytest.raises(TaskDataError, match="hf:.*broken"):
        list(hub_records("gsm8k", str(tmp_path / "broken")))


def test_hub_loader_needs_a_dataset_name_for_tasks_without_a_default() -> None:
    with pytest.raises(ValueError, match="no default hub dataset for 'kcross'"):
        next(hub_records("kcross"))


def test_synthetic_task_is_deterministic_distinct_and_checkable() -> None:
    task = synthetic_task(30, 5, 5, seed=3)
    assert {k: len(v) for k, v in task.items()} == {"train": 30, "val": 5, "test": 5}
    assert task == synthetic_task(30, 5, 5, seed=3)
    assert task["train"] == synthetic_task(30, 0, 9, seed=3)["train"]
    assert task != synthetic_task(30, 5, 5, seed=4)
    prompts = [ex.prompt for split in task.values() for ex in split]
    assert len(set(prompts)) == len(prompts)
    for ex in task["train"]:
        a, op, b = ex.prompt.removeprefix("What is ").split("?")[0].split()
        assert int(ex.answer) == eval(f"{a}{op}{b}")  # the gold is right
        assert score("synthetic", f"The answer is {ex.answer}.", ex) == 1.0


def test_synthetic_task_rejects_bad_sizes() -> None:
    with pytest.raises(ValueError, match="non-negative"):
        synthetic_task(-1, 0, 0, seed=0)
    with pytest.raises(ValueError, match="at most 10000"):
        synthetic_task(10_001, 0, 0, seed=0)
