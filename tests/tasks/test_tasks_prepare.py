"""``prepare-data`` end to end on the released-shape fixture folder."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import pytest

from sparta_hpc.errors import TaskDataError
from sparta_hpc.tasks import prepare
from sparta_hpc.tasks.schema import SPLITS, TASK_NAMES, TaskExample, read_split, read_task
from tests.tasks.task_fixtures import write_lines

EXPECTED = {  # canonical counts (train, val, test) and bad records per task for the fixture folder
    "gsm8k": ((4, 2, 2), 2),
    "math_easy": ((2, 1, 2), 2),
    "math_medium": ((2, 0, 0), 0),
    "com2": ((3, 1, 2), 1),
    "normad_country": ((2, 2, 2), 1),
    "normad_value": ((2, 2, 2), 1),
    "normad_rot": ((1, 0, 0), 0),
    "kcross": ((3, 1, 1), 1),
    "truthfulqa": ((3, 0, 0), 1),
    "alpaca": ((3, 0, 0), 1),
    "medqa": ((3, 1, 2), 1),
}


def run(*argv: str) -> int:
    parser = argparse.ArgumentParser()
    prepare.add_arguments(parser)
    return prepare.main(parser.parse_args(list(argv)))


def test_all_tasks_from_the_released_folder(
    released: Path, tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    out = tmp_path / "prepared"
    assert run("--task", "all", "--source", str(released), "--out", str(out)) == 0
    printed = capsys.readouterr().out
    assert "math_hard: no files found" in printed
    assert sorted(p.name for p in out.iterdir()) == sorted(EXPECTED)
    for task, (sizes, num_bad) in EXPECTED.items():
        splits = read_task(out / task)
        assert tuple(len(splits[s]) for s in SPLITS) == sizes, task
        manifest = json.loads((out / task / "manifest.json").read_text())
        assert manifest["counts"] == dict(zip(SPLITS, sizes, strict=True))
        assert len(manifest["bad_records"]) == num_bad, task
        assert f"{task}: train {sizes[0]}, val {sizes[1]}, test {sizes[2]}" in printed
    assert not list(out.rglob("*.tmp")) and not list(out.rglob(".*"))


def test_notes_report_unused_splits_missing_tests_and_the_normad_quirk(
    released: Path, tmp_path: Path
) -> None:
    out = tmp_path / "prepared"
    assert run("--task", "all", "--source", str(released), "--out", str(out)) == 0
    notes = {task: json.loads((out / task / "manifest.json").read_text())["notes"] for task in EXPECTED}
    assert any("source split 'valid' (1 records) not used" in n for n in notes["normad_country"])
    assert any("released quirk" in n and "country_dataset.json" in n for n in notes["normad_value"])
    assert not any("released quirk" in n for n in notes["normad_country"])
    assert any("no test split" in n for n in notes["truthfulqa"])
    manifest = json.loads((out / "gsm8k" / "manifest.json").read_text())
    assert manifest["source_counts"] == {"test": 4, "train": 4}
    assert (
        manifest["bad_records"][1]
        == f"{released / 'gsm8k/test.jsonl'}:5: answer 'no number here' has no final number"
    )


def test_val_and_test_are_an_even_seeded_division_of_the_source_test(released: Path, tmp_path: Path) -> None:
    for seed, out in ((0, tmp_path / "a"), (0, tmp_path / "b"), (5, tmp_path / "c")):
        assert (
            run("--task", "normad_country", "--source", str(released), "--out", str(out), "--seed", str(seed))
            == 0
        )
    a, b, c = (read_task(tmp_path / name / "normad_country") for name in "abc")
    assert a == b
    ids = {s: [ex.id for ex in a[s]] for s in SPLITS}
    assert sorted(ids["val"] + ids["test"]) == [f"normad_country/test/{n}" for n in range(31, 35)]
    assert not set(ids["val"]) & set(ids["test"])
    assert [ex.id for ex in a["train"]] == ["normad_country/train/11", "normad_country/train/13"]
    assert a["train"] == c["train"] and {s: a[s] for s in ("val", "test")} != {
        s: c[s] for s in ("val", "test")
    }


def test_split_evenly_sizes() -> None:
    examples = [TaskExample(id=str(i), prompt="p") for i in range(7)]
    val, test = prepare.split_evenly(examples, seed=1)
    assert (len(val), len(test)) == (3, 4)
    assert sorted(ex.id for ex in val + test) == [str(i) for i in range(7)]
    assert [ex.id for ex in val] == sorted((ex.id for ex in val), key=int)  # source order kept
    assert prepare.split_evenly([], seed=1) == ([], [])


def test_a_validation_split_stands_in_for_a_missing_test(tmp_path: Path) -> None:
    source = write_lines(tmp_path / "validation.jsonl", [{"question": f"q{n}"} for n in range(4)])
    assert run("--task", "truthfulqa", "--source", str(source), "--out", str(tmp_path / "o")) == 0
    splits = read_task(tmp_path / "o" / "truthfulqa")
    assert [len(splits[s]) for s in SPLITS] == [0, 2, 2]


def test_one_task_file_as_source(released: Path, tmp_path: Path) -> None:
    source = released / "com2/train.json"
    assert run("--task", "com2", "--source", str(source), "--out", str(tmp_path / "o")) == 0
    assert read_split(tmp_path / "o" / "com2" / "test.jsonl")[0].answer in {"g3", "g4", "g5"}


def test_rerun_overwrites_in_place(released: Path, tmp_path: Path) -> None:
    args = ("--task", "gsm8k", "--source", str(released), "--out", str(tmp_path / "o"))
    assert run(*args) == 0
    first = (tmp_path / "o" / "gsm8k" / "train.jsonl").read_bytes()
    assert run(*args) == 0
    assert (tmp_path / "o" / "gsm8k" / "train.jsonl").read_bytes() == first


def test_synthetic_needs_no_source(tmp_path: Path) -> None:
    assert run("--task", "synthetic", "--out", str(tmp_path), "--synthetic-sizes", "8", "2", "3") == 0
    splits = read_task(tmp_path / "synthetic")
    assert [len(splits[s]) for s in SPLITS] == [8, 2, 3]


@pytest.mark.parametrize(
    ("argv", "code", "message"),
    [
        (("--task", "gsm8k"), 2, "--source is required"),
        (("--task", "synthetic", "--synthetic-sizes", "1", "-1", "0"), 2, "non-negative"),
        (("--task", "gsm8k", "--source", "{missing}"), 1, "no such file or folder"),
        (
            ("--task", "math_hard", "--source", "{data}"),
            1,
            "no math_hard file (looked for MATH/*/hard.jsonl)",
        ),
        (
            ("--task", "all", "--source", "{data}/com2/train.json"),
            1,
            "--task all needs the released data/ folder",
        ),
        (("--task", "all", "--source", "{empty}"), 1, "no task files found"),
    ],
)
def test_usage_errors(
    released: Path,
    tmp_path: Path,
    capsys: pytest.CaptureFixture,
    argv: tuple[str, ...],
    code: int,
    message: str,
) -> None:
    (tmp_path / "empty").mkdir()
    paths = {"missing": str(tmp_path / "missing"), "data": str(released), "empty": str(tmp_path / "empty")}
    argv = tuple(a.format(**paths) for a in argv)
    assert run(*argv, "--out", str(tmp_path / "o")) == code
    assert message in capsys.readouterr().err


def test_an_unparseable_file_fails_its_task_only(
    released: Path, tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    (released / "com2/train.json").write_text("[{", encoding="utf-8")
    assert run("--task", "all", "--source", str(released), "--out", str(tmp_path / "o")) == 1
    err = capsys.readouterr().err
    assert f"error: com2: {released / 'com2/train.json'}:1: not valid JSON" in err
    assert (tmp_path / "o" / "gsm8k" / "train.jsonl").is_file()
    assert not (tmp_path / "o" / "com2").exists()


def test_hub_sources() -> None:
    assert prepare.find_sources("kcross", "hf:someone/kcross") == ["hf:someone/kcross"]
    assert prepare.find_sources("gsm8k", "hf", single_task=False) == ["hf"]
    assert prepare.find_sources("kcross", "hf", single_task=False) == []  # no default dataset: skipped
    with pytest.raises(TaskDataError, match="--task all takes --source hf"):
        prepare.find_sources("gsm8k", "hf:openai/gsm8k", single_task=False)


def test_every_task_is_known_to_the_file_finder() -> None:
    assert set(prepare.RELEASED_FILES) == set(TASK_NAMES)
