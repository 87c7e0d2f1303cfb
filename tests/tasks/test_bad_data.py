"""Bad task data, as a table: ``launcher.start`` reads the train split and the evaluation splits the way the
plan and evaluate stages will, before the run directory is touched, so every bad file is refused up front by
a ``TaskDataError`` naming ``file:line`` (or a ``ConfigError`` naming the key, for a missing file), and an
existing run directory is left exactly as it was: the same files, bytes and mtimes.

The run directory was opened with the good data; each case then damages one split file (and restores it), as
when data change under a run that is resumed.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
import yaml

from sparta_hpc.errors import ConfigError, SpartaError, TaskDataError
from sparta_hpc.run import iteration, launcher
from sparta_hpc.tasks.schema import MAX_LINE_BYTES, read_split
from tests.bad_inputs import copy_run_dir, make_run_dir, no_work, snapshot

__all__ = ["no_work"]

TASK = "gsm8k"


def example(i: int, split: str = "train", **changes: object) -> dict[str, object]:
    return {"id": f"{TASK}/{split}/{i}", "prompt": f"What is {i} + 1?", "answer": str(i + 1), **changes}


def jsonl(*records: object) -> bytes:
    return "".join(json.dumps(r) + "\n" for r in records).encode()


GOOD = {
    split: jsonl(*(example(i, split) for i in range(n)))
    for split, n in (("train", 6), ("val", 3), ("test", 3))
}
"""The split files the run directory was started with."""


@dataclass(frozen=True)
class Case:
    """One bad split file: its bytes (or a change to the folder), the error and what its message names."""

    id: str
    split: str
    content: bytes | None
    names: tuple[str, ...]
    """Fragments of the message; ``$FILE`` is the split file's path."""
    error: type[SpartaError] = TaskDataError
    change: Callable[[Path], None] | None = None
    """Instead of ``content``: change the split file's path (make it a folder, take its permissions ...)."""


def _folder(path: Path) -> None:
    path.unlink()
    path.mkdir()


def _missing(path: Path) -> None:
    path.unlink()


HUGE = json.dumps(example(1, prompt="x" * MAX_LINE_BYTES)).encode() + b"\n"

CASES = [
    Case(
        "malformed-json",
        "train",
        jsonl(example(0)) + b'{"id": "gsm8k/train/9", "prompt": \n',
        ("$FILE:2: not valid JSON",),
    ),
    Case(
        "truncated-last-line",
        "train",
        GOOD["train"] + b'{"id": "gsm8k/train/6", "pro',
        ("$FILE:7: not valid JSON",),
    ),
    Case(
        "not-an-object",
        "train",
        jsonl(example(0), ["gsm8k/train/1", "What?"]),
        ("$FILE:2: expected a JSON object, got list",),
    ),
    Case(
        "a-bare-string",
        "train",
        jsonl(example(0), "What is 2 + 2?"),
        ("$FILE:2: expected a JSON object, got str",),
    ),
    Case(
        "missing-prompt",
        "train",
        jsonl(example(0), {"id": "gsm8k/train/1"}),
        ("$FILE:2: missing keys ['prompt']",),
    ),
    Case("missing-id", "train", jsonl({"prompt": "What?"}), ("$FILE:1: missing keys ['id']",)),
    Case(
        "unknown-key",
        "train",
        jsonl(example(0, question="?")),
        (
            "$FILE:1:",
            "unknown keys ['question']",
        ),
    ),
    Case(
        "id-not-a-string",
        "train",
        jsonl(example(0), example(1, id=7)),
        ("$FILE:2: id must be a non-empty string",),
    ),
    Case(
        "empty-prompt",
        "train",
        jsonl(example(0, prompt="  ")),
        ("$FILE:1:", "prompt must be a non-empty string"),
    ),
    Case(
        "answer-a-number",
        "train",
        jsonl(example(0, answer=1)),
        ("$FILE:1:", "answer must be a string or null"),
    ),
    Case(
        "choices-a-string", "train", jsonl(example(0, choices="ABCD")), ("$FILE:1: choices must be a list",)
    ),
    Case(
        "metadata-a-list",
        "train",
        jsonl(example(0, metadata=[1])),
        ("$FILE:1:", "metadata must be an object"),
    ),
    Case(
        "answer-not-a-letter",
        "train",
        jsonl(example(0, choices=["x", "y"], answer="C")),
        ("$FILE:1:", "not an option letter A-B"),
    ),
    Case(
        "too-many-choices",
        "train",
        jsonl(example(0, choices=["x"] * 27, answer=None)),
        ("$FILE:1:", "27 choices; at most 26"),
    ),
    Case("nested-too-deeply", "train", b"[" * 100_000 + b"\n", ("$FILE:1: JSON nested too deeply",)),
    Case(
        "duplicate-id",
        "train",
        jsonl(example(0), example(1), example(0)),
        ("$FILE:3: duplicate id 'gsm8k/train/0'",),
    ),
    Case("empty-file", "train", b"", ("$FILE: no examples",)),
    Case("blank-lines-only", "train", b"\n  \n\t\n\n", ("$FILE: no examples",)),
    Case(
        "latin-1",
        "train",
        jsonl(example(0)) + b'{"id": "gsm8k/train/1", "prompt": "caf\xe9?"}\n',
        ("$FILE:2: not valid UTF-8 (byte 0xe9 at column 39)",),
    ),
    Case("utf-16", "train", json.dumps(example(0)).encode("utf-16"), ("$FILE:1: not valid UTF-8",)),
    Case(
        "byte-order-mark",
        "train",
        b"\xef\xbb\xbf" + GOOD["train"],
        ("$FILE:1: starts with a UTF-8 byte order mark",),
    ),
    Case(
        "huge-line", "train", jsonl(example(0)) + HUGE, (f"$FILE:2: line longer than {MAX_LINE_BYTES} bytes",)
    ),
    Case("split-is-a-folder", "train", None, ("task.data_dir=", "$FILE is not a file"), ConfigError, _folder),
    # ---- the evaluation splits are read up front too, though evaluation runs last
    Case("val-malformed", "val", GOOD["val"] + b"{oops}\n", ("$FILE:4: not valid JSON",)),
    Case("test-empty", "test", b"\n", ("$FILE: no examples", "eval.splits=[val]")),
    Case("val-missing", "val", None, ("task.data_dir=", "$FILE does not exist"), ConfigError, _missing),
]


@pytest.fixture(scope="module")
def data(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """``data_dir`` with the good split files of the task."""
    root = tmp_path_factory.mktemp("data")
    (root / TASK).mkdir()
    for split, content in GOOD.items():
        (root / TASK / f"{split}.jsonl").write_bytes(content)
    return root


@pytest.fixture(scope="module")
def config(data: Path) -> Path:
    """A config on the task (evaluation on val and test); the run directory's and every case's."""
    cfg = {
        "run": {"name": "bad-data", "iterations": 1},
        "models": [{"name": n, "base": "tiny", "adapter": "tiny"} for n in "abcd"],
        "task": {"name": TASK, "data_dir": str(data)},
        "plan": {"num_prompts": 4, "k": 2},
        "eval": {"every": 1, "splits": ["val", "test"]},
        "cluster": {"backend": "inline"},
    }
    path = data.parent / "config.yaml"
    path.write_text(yaml.safe_dump(cfg))
    return path


@pytest.fixture(scope="module")
def existing_run(config: Path) -> Path:
    return make_run_dir(config, config.parent / "run")


@pytest.fixture
def split_file(data: Path) -> Iterator[Callable[[str], Path]]:
    """The path of a split file; whatever a case does to it is undone afterwards."""
    touched: list[Path] = []

    def path(split: str) -> Path:
        touched.append(data / TASK / f"{split}.jsonl")
        return touched[-1]

    yield path
    for p in touched:
        if p.is_dir():
            p.rmdir()
        if p.exists():
            p.chmod(0o644)
        p.write_bytes(GOOD[p.stem])


def test_the_table_is_large_enough() -> None:
    assert len(CASES) >= 10 and len({c.id for c in CASES}) == len(CASES)


@pytest.mark.parametrize("case", CASES, ids=lambda c: c.id)
def test_bad_data_is_refused_before_the_run_directory_is_touched(
    case: Case,
    config: Path,
    existing_run: Path,
    split_file: Callable[[str], Path],
    tmp_path: Path,
    no_work: list[str],
) -> None:
    path = split_file(case.split)
    if case.change is not None:
        case.change(path)
    else:
        assert case.content is not None
        path.write_bytes(case.content)
    run = copy_run_dir(existing_run, tmp_path / "run")
    before = snapshot(run)
    with pytest.raises(SpartaError) as info:
        launcher.start(launcher.LaunchSpec(config=str(config), run_dir=str(run)), log=lambda s: None)
    message = str(info.value)
    assert type(info.value) is case.error, message
    assert "\n" not in message
    for fragment in case.names:
        assert fragment.replace("$FILE", str(path)) in message
    assert no_work == [] and snapshot(run) == before


def test_the_good_data_gets_through(
    config: Path, existing_run: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The control: with the good files the launcher reaches the run (stubbed here)."""
    started = []

    class Done:
        iteration = iterations_total = 1

    monkeypatch.setattr(iteration, "run", lambda cfg, run_dir, **kw: started.append(run_dir) or Done())
    before = snapshot(existing_run)
    spec = launcher.LaunchSpec(config=str(config), run_dir=str(existing_run))
    assert launcher.start(spec, log=lambda s: None) == 0
    assert len(started) == 1 and snapshot(existing_run) == before


def test_a_line_of_exactly_the_limit_is_read(tmp_path: Path) -> None:
    """``MAX_LINE_BYTES`` counts the record without its newline: a line of exactly that length is fine."""
    head, tail = b'{"id": "a", "prompt": "', b'"}'
    line = head + b"x" * (MAX_LINE_BYTES - len(head) - len(tail)) + tail
    assert len(line) == MAX_LINE_BYTES
    (tmp_path / "s.jsonl").write_bytes(line + b"\n")
    assert len(read_split(tmp_path / "s.jsonl")[0].prompt) > MAX_LINE_BYTES - 100
    (tmp_path / "s.jsonl").write_bytes(line[:-2] + b"x" + tail)
    with pytest.raises(TaskDataError, match=":1: line longer than"):
        read_split(tmp_path / "s.jsonl")


def test_a_split_that_cannot_be_opened_is_named(tmp_path: Path) -> None:
    """What the chmod-000 case checks, where root can run it too: the open error is a TaskDataError."""
    with pytest.raises(TaskDataError, match=f"^{tmp_path}: cannot read: Is a directory$"):
        read_split(tmp_path)
