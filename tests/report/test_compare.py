"""``eval.tasks`` (extra evaluation tasks) and ``sparta-hpc compare`` on tiny inline runs."""

from __future__ import annotations

import csv
import os
import subprocess
import sys
from pathlib import Path

import pytest

from sparta_hpc.config import load_config
from sparta_hpc.errors import ConfigError, StateError
from sparta_hpc.files import read_json, write_jsonl
from sparta_hpc.report import compare
from sparta_hpc.tasks.schema import TaskExample

ROOT = Path(__file__).resolve().parents[2]
TINY = [
    "run.iterations=1",
    "plan.num_prompts=4",
    "generate.max_new_tokens=4",
    "train.max_length=32",
    "eval.max_new_tokens=4",
    "task.synthetic_eval_size=4",
]


def write_gsm8k(data: Path) -> None:
    for split, n in (("val", 3), ("test", 2)):
        examples = [
            TaskExample(id=f"gsm8k/{split}/{i}", prompt=f"What is {i}+2?", answer=str(i + 2)).to_dict()
            for i in range(n)
        ]
        write_jsonl(data / "gsm8k" / f"{split}.jsonl", examples)


def test_eval_tasks_are_checked_up_front(tmp_path: Path) -> None:
    from sparta_hpc.config.load import check_paths

    with pytest.raises(ConfigError, match="distinct task names"):
        load_config(None, ["eval.tasks=[nope]"])
    with pytest.raises(ConfigError, match="lists the training task"):
        load_config(None, ["eval.tasks=[synthetic]"])
    with pytest.raises(ConfigError, match="task.data_dir is required for eval.tasks"):
        check_paths(load_config(None, ["eval.tasks=[gsm8k]"]))
    over = ["eval.tasks=[gsm8k]", f"task.data_dir={tmp_path}"]
    with pytest.raises(ConfigError, match="gsm8k/val.jsonl does not exist"):
        check_paths(load_config(None, over))
    write_gsm8k(tmp_path)
    check_paths(load_config(None, over))


def test_missing_or_unfinished_run_is_named(tmp_path: Path) -> None:
    with pytest.raises(StateError, match="nope: no such run directory"):
        compare.compare([tmp_path / "nope"])
    (tmp_path / "empty").mkdir()
    with pytest.raises(StateError, match="empty is not a run directory"):
        compare.compare([tmp_path / "empty"])


def launch(run_dir: Path, *overrides: str) -> None:
    cmd = [sys.executable, str(ROOT / "launch.py"), "--cluster", "inline", "--run-dir", str(run_dir)]
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "TOKENIZERS_PARALLELISM": "false"}
    proc = subprocess.run([*cmd, *TINY, *overrides], cwd=ROOT, env=env, capture_output=True, text=True)
    assert proc.returncode == 0, (proc.stdout + proc.stderr)[-3000:]


@pytest.fixture(scope="module")
def runs(tmp_path_factory: pytest.TempPathFactory) -> list[Path]:
    base = tmp_path_factory.mktemp("compare")
    write_gsm8k(base / "data")
    dirs = [base / "plain", base / "unseen", base / "wider"]
    launch(dirs[0])
    launch(dirs[1], "eval.tasks=[gsm8k]", f"task.data_dir={base / 'data'}")
    launch(dirs[2], "plan.num_prompts=6")
    return dirs


def eval_files(run_dir: Path, pattern: str = "iter_*/evaluate/*/*/*.jsonl") -> dict[str, bytes]:
    return {str(p.relative_to(run_dir)): p.read_bytes() for p in sorted(run_dir.glob(pattern))}


@pytest.mark.slow
def test_extra_task_adds_records_and_columns_and_leaves_the_rest_unchanged(runs: list[Path]) -> None:
    plain, unseen = runs[0], runs[1]
    assert eval_files(unseen) == eval_files(plain)  # the training task's records: byte-identical
    extra = eval_files(unseen, "iter_*/evaluate/*/*/gsm8k/*.jsonl")
    assert len(extra) == 2 * 4 * 2  # (initial + iter_0) x 4 players x (val, test)
    assert '"task": "gsm8k"' in next(iter(extra.values())).decode()
    info = read_json(unseen / "state.json")["stages"]["0"]["evaluate"]["info"]
    base_info = read_json(plain / "state.json")["stages"]["0"]["evaluate"]["info"]
    assert info["best_on_val"] == base_info["best_on_val"]  # chosen on the training task's val
    for label, players in info["scores"].items():
        for p, splits in players.items():
            assert set(splits) == {"val", "test", "gsm8k/val", "gsm8k/test"}
            assert {k: splits[k] for k in ("val", "test")} == base_info["scores"][label][p]
    from sparta_hpc.report import results
    from sparta_hpc.store.rundir import RunDir

    res = results.collect(RunDir(unseen))
    rows = list(csv.reader(results.csv_text(results.selection_rows(res), res.extra_keys).splitlines()))
    assert rows[0] == ["kind", "iteration", "player", "val", "test", "gsm8k/val", "gsm8k/test"]
    plain_rows = results.csv_text(results.selection_rows(results.collect(RunDir(plain)))).splitlines()
    assert [r[:5] for r in rows[1:]] == [r.split(",") for r in plain_rows[1:]]


@pytest.mark.slow
def test_compare_table_matches_each_runs_results(runs: list[Path], tmp_path: Path) -> None:
    from sparta_hpc.cli import main
    from sparta_hpc.report import results
    from sparta_hpc.store.rundir import RunDir

    with pytest.raises(SystemExit) as done:
        main(["compare", *map(str, runs), "--out", str(tmp_path / "out")])
    assert done.value.code == 0
    rows = list(csv.DictReader((tmp_path / "out/compare.csv").open()))
    assert [r["run"] for r in rows] == ["plain", "unseen", "wider"]  # run.name is the same: folders
    assert list(rows[0])[len(compare.COLUMNS) :] == ["eval.tasks", "plan.num_prompts", "task.data_dir"]
    for run_dir, row in zip(runs, rows, strict=True):
        written = results.write_results(RunDir(run_dir), tmp_path / run_dir.name)[0]
        own = {r["kind"]: r for r in csv.DictReader(written.open())}
        assert row["chosen_iteration"] == own["sparta"]["iteration"]
        assert row["chosen_player"] == own["sparta"]["player"]
        assert (row["chosen_val"], row["chosen_test"]) == (own["sparta"]["val"], own["sparta"]["test"])
        assert (row["best_initial_val"], row["best_initial_test"]) == (
            own["best_initial"]["val"],
            own["best_initial"]["test"],
        )
        ratings = [r["rating"] for r in read_json(run_dir / "state.json")["ratings"].values()]
        assert float(row["rating_spread"]) == pytest.approx(max(ratings) - min(ratings))
        assert row["profile"] == load_config(run_dir / "config.yaml").run.profile
    assert rows[2]["plan.num_prompts"] == "6" and rows[0]["plan.num_prompts"] == "4"
    md = (tmp_path / "out/compare.md").read_text()
    assert "| plain |" in md and "plan.num_prompts" in md
    assert (tmp_path / "out/compare.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    with pytest.raises(StateError, match="unfinished"):
        state = runs[0] / "state.json"
        text = state.read_text()
        try:
            state.write_text(text.replace('"iteration": 1', '"iteration": 0', 1))
            compare.compare(runs)
        finally:
            state.write_text(text)
