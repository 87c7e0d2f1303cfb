"""The evaluate stage: planning, scoring, selection on val, the results files, and a tiny run end to end."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from sparta_hpc.config import load_config
from sparta_hpc.engines.base import Completion, ExpectedScore, Request
from sparta_hpc.errors import ConfigError
from sparta_hpc.files import read_json, read_jsonl, write_jsonl
from sparta_hpc.report import results
from sparta_hpc.store.rundir import RunDir
from sparta_hpc.tasks import evaluation, metrics
from sparta_hpc.tasks.evaluation import INITIAL, EvalConfig, EvalRecord, EvalUnit
from sparta_hpc.tasks.schema import TaskExample

ROOT = Path(__file__).resolve().parents[2]
MINI = ["run.iterations=2", "plan.num_prompts=8", "generate.max_new_tokens=8", "train.max_length=64"]
EVAL = ["eval.max_examples=6", "eval.chunk_size=4"]


def rec(label: str, player: str, split: str, score: float | None, i: int = 0) -> EvalRecord:
    return EvalRecord(
        id=f"x/{split}/{i}",
        player=player,
        iteration=label,
        split=split,
        output="",
        num_tokens=0,
        extracted=None,
        score=score,
        judge_output=None,
    )


def table(spec: dict[tuple[str, str], tuple[float, float]]) -> list[EvalRecord]:
    """Two records per (label, player, split) whose mean is the given (val, test)."""
    out = []
    for (label, player), means in spec.items():
        for split, mean in zip(("val", "test"), means, strict=True):
            out += [rec(label, player, split, mean, 0), rec(label, player, split, mean, 1)]
    return out


# ---------------------------------------------------------------- planning and config


def test_labels_and_units_follow_every_and_include_the_initial_models() -> None:
    assert evaluation.labels(0, 1, 3) == [INITIAL, "iter_0"]
    assert [evaluation.labels(t, 2, 3) for t in range(3)] == [[INITIAL], ["iter_1"], ["iter_2"]]
    assert [evaluation.labels(t, 0, 3) for t in range(3)] == [[], [], []]
    cfg = EvalConfig(num_shards=2)
    units = evaluation.plan_units(0, ["a", "b"], cfg, 3)
    assert len(units) == 2 * 2 * 2 * 2
    assert units[:3] == [
        EvalUnit(label=INITIAL, player="a", split="val", shard=0),
        EvalUnit(label=INITIAL, player="a", split="val", shard=1),
        EvalUnit(label=INITIAL, player="a", split="test", shard=0),
    ]
    groups = evaluation.task_units(units, 3)
    assert [len(g) for g in groups] == [3, 3, 3, 3, 3, 1]
    assert [u for g in groups for u in g] == units
    assert sorted([INITIAL, "iter_10", "iter_2"], key=evaluation.label_order) == [
        INITIAL,
        "iter_2",
        "iter_10",
    ]


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        (["eval.splits=[test]"], "must list val"),
        (["eval.num_shards=0"], "eval.num_shards=0"),
        (["eval.max_examples=0"], "eval.max_examples=0"),
        (["eval.judge_method=vote"], "eval.judge_method"),
        (["task.synthetic_eval_size=0"], "task.synthetic_eval_size=0"),
        (["task.name=alpaca", "task.data_dir=/x"], "eval.judge_model"),
        (["eval.judge_model.name=tiny-a", "eval.judge_model.base=tiny"], "no player's name"),
    ],
)
def test_bad_eval_settings_are_rejected(overrides: list[str], message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        load_config(None, overrides)


def test_alpaca_without_evaluation_needs_no_judge_and_eval_keys_default() -> None:
    cfg = load_config(None, ["task.name=alpaca", "task.data_dir=/x", "eval.every=0"])
    assert cfg.eval.judge_model is None
    cfg = load_config(None, ["eval.judge_model.name=judge", "eval.judge_model.base=tiny"])
    assert (cfg.eval.judge_model.name, cfg.eval.judge_model.adapter) == ("judge", None)


def test_split_examples_cap_and_the_train_pool_is_unchanged() -> None:
    from sparta_hpc.tasks.pool import prompt_pool

    small = load_config(None, ["task.synthetic_eval_size=5"])
    large = load_config(None, ["task.synthetic_eval_size=40", "eval.max_examples=7"])
    assert prompt_pool(small.task, small.run.seed) == prompt_pool(large.task, large.run.seed)
    assert len(evaluation.split_examples(small.task, small.eval, small.run.seed, "val")) == 5
    capped = evaluation.split_examples(large.task, large.eval, large.run.seed, "test")
    assert len(capped) == 7 and capped[0].id == "synthetic/test/0"
    assert {
        e.id for e in evaluation.split_examples(large.task, large.eval, large.run.seed, "val")
    }.isdisjoint(e.id for e in capped)


# ---------------------------------------------------------------- scoring


class FakeEngine:
    """Answers and judges with fixed texts; records what it was asked."""

    def __init__(self, judge_texts: list[str], expected: list[float] | None = None) -> None:
        self.judge_texts, self.expected, self.asked = judge_texts, expected or [], []

    def generate(self, requests: list[Request], sampling: Any) -> list[Completion]:
        assert sampling.greedy
        self.asked += requests
        return [
            Completion(request_id=r.request_id, text=t, num_prompt_tokens=1, num_new_tokens=1)
            for r, t in zip(requests, self.judge_texts, strict=True)
        ]

    def expected_scores(self, requests: list[Request]) -> list[ExpectedScore]:
        self.asked += requests
        return [
            ExpectedScore(request_id=r.request_id, score=s, mass=1.0, num_prompt_tokens=1)
            for r, s in zip(requests, self.expected, strict=True)
        ]


def answers(*texts: str) -> tuple[list[Request], list[Completion]]:
    requests = [
        Request(request_id=f"e{i}", model="initial/a", prompt=f"q{i}", seed=i) for i in range(len(texts))
    ]
    completions = [
        Completion(request_id=r.request_id, text=t, num_prompt_tokens=1, num_new_tokens=1)
        for r, t in zip(requests, texts, strict=True)
    ]
    return requests, completions


def test_task_metric_scores_answers() -> None:
    cfg = load_config(None, [])
    requests, completions = answers("It is 12.", "Answer: 7", "no idea")
    examples = {f"e{i}": TaskExample(id=f"e{i}", prompt="q", answer="12") for i in range(3)}
    scored = evaluation.score_answers(cfg.task, cfg.eval, None, requests, completions, examples)
    assert scored == [("12", 1.0, None), ("7", 0.0, None), (None, 0.0, None)]
    assert scored[0][1] == metrics.score("synthetic", "It is 12.", examples["e0"])


def test_alpaca_judge_scores_1_to_10_and_failed_judgments_are_none() -> None:
    over = ["task.name=alpaca", "task.data_dir=/x", "eval.judge_model.name=j", "eval.judge_model.base=tiny"]
    cfg = load_config(None, over)
    requests, completions = answers("a", "b", "c")
    examples = {f"e{i}": TaskExample(id=f"e{i}", prompt="q") for i in range(3)}
    engine = FakeEngine(['{"score": 7}', '{"score": 0}', "great"])
    scored = evaluation.score_answers(cfg.task, cfg.eval, engine, requests, completions, examples)
    assert scored == [(None, 7.0, '{"score": 7}'), (None, None, '{"score": 0}'), (None, None, "great")]
    ending = 'in this form: {"score": N}, where N is your grade.'  # the default rubric, whatever judge.rubric
    assert all(r.model == evaluation.JUDGE and r.prompt.endswith(ending) for r in engine.asked)
    assert "Answer to grade:\nb" in engine.asked[1].prompt

    cfg = load_config(None, [*over, "eval.judge_method=logprob"])
    engine = FakeEngine([], expected=[3.25, 10.000000001, 1.0])
    scored = evaluation.score_answers(cfg.task, cfg.eval, engine, requests, completions, examples)
    assert [s for _, s, _ in scored] == [3.25, 10.0, 1.0]
    assert all(r.assistant_prefix == '{"score": ' for r in engine.asked)


def test_record_round_trip_and_bad_records() -> None:
    r = rec("iter_3", "a", "val", 1.0)
    assert EvalRecord.from_dict(r.to_dict()) == r
    with pytest.raises(ValueError, match="keys"):
        EvalRecord.from_dict({**r.to_dict(), "extra": 1})
    with pytest.raises(ValueError, match="score"):
        EvalRecord.from_dict({**r.to_dict(), "score": True})


# ---------------------------------------------------------------- selection on val


def test_summary_means_leave_failed_scores_out() -> None:
    records = [
        rec("iter_0", "a", "val", 6.0),
        rec("iter_0", "a", "val", None, 1),
        rec("iter_0", "a", "test", None),
    ]
    scores, unscored = evaluation.summarize(records)
    assert scores == {"iter_0": {"a": {"val": 6.0, "test": None}}}
    assert unscored == 2


def test_best_on_val_ignores_test_and_breaks_ties_by_candidate_order() -> None:
    scores, _ = evaluation.summarize(
        table({("t", "a"): (0.5, 0.9), ("t", "b"): (0.75, 0.1), ("t", "c"): (0.75, 0.2)})
    )
    assert evaluation.best_on_val(scores, [("t", p) for p in "abc"]) == ("t", "b")
    assert evaluation.best_on_val(scores, [("t", p) for p in "cba"]) == ("t", "c")
    assert evaluation.best_on_val(scores, [("t", "zz")]) is None
    assert evaluation.best_on_val({"t": {"a": {"val": None}}}, [("t", "a")]) is None


HAND_MADE = {
    (INITIAL, "a"): (0.50, 0.50),
    (INITIAL, "b"): (0.25, 0.75),
    ("iter_0", "a"): (0.25, 1.00),
    ("iter_0", "b"): (0.75, 0.25),
    ("iter_1", "a"): (0.75, 0.50),
    ("iter_1", "b"): (0.50, 0.00),
}


def hand_made_results() -> results.EvalResults:
    scores, unscored = evaluation.summarize(table(HAND_MADE))
    return results.EvalResults(task="gsm8k", players=("a", "b"), scores=scores, unscored=unscored)


def test_selection_rows_choose_on_val() -> None:
    rows = [(r.kind, r.label, r.player, r.val, r.test) for r in results.selection_rows(hand_made_results())]
    assert rows == [
        ("initial", INITIAL, "a", 0.5, 0.5),
        ("initial", INITIAL, "b", 0.25, 0.75),
        ("best_initial", INITIAL, "a", 0.5, 0.5),
        ("best_iteration", "iter_0", "b", 0.75, 0.25),
        ("best_iteration", "iter_1", "a", 0.75, 0.5),
        # iter_0/b and iter_1/a tie on val: the earlier iteration wins; initial models are not candidates
        ("sparta", "iter_0", "b", 0.75, 0.25),
    ]


def test_results_without_iterations_or_scores_have_empty_choices() -> None:
    only_initial = {k: v for k, v in HAND_MADE.items() if k[0] == INITIAL}
    scores, _ = evaluation.summarize(table(only_initial))
    res = results.EvalResults(task="gsm8k", players=("a", "b"), scores=scores)
    assert results.selection_rows(res)[-1] == results.ResultRow(
        kind="sparta", label=None, player=None, val=None, test=None
    )
    assert "| SPARTA (chosen on val over all iterations) | - | - | - | - |" in results.markdown_text(res)
    empty = results.EvalResults(task="alpaca", players=("a",), scores={})
    assert results.csv_text(results.selection_rows(empty)) == "kind,iteration,player,val,test\nsparta,,,,\n"


def test_tables_text() -> None:
    res = hand_made_results()
    csv = results.csv_text(results.selection_rows(res)).splitlines()
    assert csv[0] == "kind,iteration,player,val,test" and csv[-1] == "sparta,iter_0,b,0.75,0.25"
    adapters = {"iter_0": {"a": "iter_000/train/a/adapter", "b": "iter_000/train/b/adapter"}}
    named = results.csv_text(results.selection_rows(res), (), adapters).splitlines()
    assert named[0] == "kind,iteration,player,val,test,adapter"
    assert named[-1] == "sparta,iter_0,b,0.75,0.25,iter_000/train/b/adapter"  # the chosen model's path
    assert named[1].startswith("initial,initial,a,") and named[1].endswith(",")  # not in adapters: empty
    by_model = results.models_csv_text(res).splitlines()
    assert by_model[:3] == ["iteration,player,split,score", "initial,a,val,0.5", "initial,a,test,0.5"]
    assert len(by_model) == 1 + 12
    md = results.markdown_text(res)
    assert "| best model of the iteration (chosen on val) | iter_1 | a | 0.7500 | 0.5000 |" in md
    assert "| player | initial | iter_0 | iter_1 |" in md and "| b | 0.7500 | 0.2500 | 0.0000 |" in md
    points = results.plot_rows(res)
    assert points[0] == {"iteration": -1, "player": "a", "split": "val", "metric": "accuracy", "value": 0.5}
    assert {p["iteration"] for p in points} == {-1, 0, 1}


# ---------------------------------------------------------------- a tiny run, end to end


def launch(run_dir: Path, *overrides: str) -> str:
    cmd = [sys.executable, str(ROOT / "launch.py"), "--cluster", "inline", "--run-dir", str(run_dir)]
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "TOKENIZERS_PARALLELISM": "false"}
    proc = subprocess.run([*cmd, *MINI, *EVAL, *overrides], cwd=ROOT, env=env, capture_output=True, text=True)
    assert proc.returncode == 0, (proc.stdout + proc.stderr)[-3000:]
    return proc.stdout


def eval_files(run_dir: Path) -> dict[str, bytes]:
    files = sorted(run_dir.glob("iter_*/evaluate/*/*/*.jsonl"))
    return {str(p.relative_to(run_dir)): p.read_bytes() for p in files}


@pytest.fixture(scope="module")
def tiny_run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    run_dir = tmp_path_factory.mktemp("eval") / "run"
    launch(run_dir)
    return run_dir


@pytest.mark.slow
def test_tiny_run_records_and_state_summary(tiny_run: Path) -> None:
    files = eval_files(tiny_run)
    assert (
        len(files) == (4 * 2 + 4) * 2
    )  # (4 initial + 4 after iteration 0) + 4 after iteration 1, x 2 splits
    assert not list(tiny_run.rglob("*.parts"))
    assert not [p for p in tiny_run.glob("iter_*/*/shard_*.jsonl") if "evaluate" in str(p)]
    records = [EvalRecord.from_dict(r) for p in files for r in read_jsonl(tiny_run / p)]
    assert len(records) == len(files) * 6
    for r in records:
        assert r.score in (0.0, 1.0) and r.judge_output is None and r.num_tokens <= 16
        assert r.extracted == metrics.extract_number(r.output)
    val_ids = [r.id for r in records if r.iteration == INITIAL and r.player == "tiny-a" and r.split == "val"]
    assert val_ids == [f"synthetic/val/{i}" for i in range(6)]

    state = read_json(tiny_run / "state.json")
    info0, info1 = (state["stages"][t]["evaluate"]["info"] for t in ("0", "1"))
    assert (info0["evaluated"], info0["tasks"], info0["new"]) == (True, 1, 16 * 6)
    assert sorted(info0["scores"]) == [INITIAL, "iter_0"] and sorted(info1["scores"]) == ["iter_1"]
    scores, _ = evaluation.summarize(records)
    assert {**info0["scores"], **info1["scores"]} == scores
    best = evaluation.best_on_val(scores, [("iter_1", f"tiny-{p}") for p in "abcd"])
    assert best is not None and info1["best_on_val"] == {"iter_1": best[1]}
    outputs = state["stages"]["1"]["evaluate"]["outputs"]
    assert "iter_001/evaluate/models.json" in outputs and len(outputs) == 1 + 8
    models = read_json(tiny_run / "iter_001/evaluate/models.json")
    assert models["iter_1"]["tiny-b"]["adapter"] == "iter_001/train/tiny-b/adapter"  # relative: relocatable


@pytest.mark.slow
def test_results_files_match_the_state_and_rewrite_identically(tiny_run: Path, tmp_path: Path) -> None:
    run = RunDir(tiny_run)
    paths = results.write_results(run, tmp_path / "out")
    assert [p.name for p in paths] == ["results.csv", "results_by_model.csv", "results.md"]
    first = {p.name: p.read_bytes() for p in paths}
    assert {p.name: p.read_bytes() for p in results.write_results(run, tmp_path / "out")} == first
    rows = first["results.csv"].decode().splitlines()
    assert [r.split(",")[0] for r in rows[1:]] == ["initial"] * 4 + ["best_initial"] + [
        "best_iteration"
    ] * 2 + ["sparta"]
    scores = results.collect(run).scores
    best = evaluation.best_on_val(scores, [(t, f"tiny-{p}") for t in ("iter_0", "iter_1") for p in "abcd"])
    assert best is not None and rows[-1].startswith(f"sparta,{best[0]},{best[1]},")


@pytest.mark.slow
def test_evaluation_resumes_by_unit_and_by_chunk(tiny_run: Path, tmp_path: Path) -> None:
    import shutil

    from sparta_hpc import jobs

    run_dir = tmp_path / "run"
    shutil.copytree(tiny_run, run_dir)
    before = eval_files(run_dir)
    unit = run_dir / "iter_001/evaluate/iter_1/tiny-c/test_00000.jsonl"
    unit.unlink()
    out = launch(run_dir)
    assert "[iter 1] evaluate: outputs are missing or changed" in out
    assert eval_files(run_dir) == before  # greedy and deterministic: the same records again

    # a killed task left the unit's first chunk (4 of 6 examples): only the rest is computed
    lines = unit.read_text().splitlines()
    unit.unlink()
    parts = run_dir / "iter_001/evaluate/iter_1/tiny-c/test_00000.parts"
    marked = [{**json.loads(line), "output": "from the saved chunk"} for line in lines[:4]]
    write_jsonl(parts / "chunk_00000.jsonl", marked)
    assert jobs.evaluate_shard(str(run_dir), 1, 0) == 6
    assert jobs.evaluate_shard(str(run_dir), 1, 0) == -1
    redone = unit.read_text().splitlines()
    assert [json.loads(x)["output"] for x in redone[:4]] == ["from the saved chunk"] * 4
    assert redone[4:] == lines[4:] and not parts.exists()


@pytest.mark.slow
def test_units_per_task_never_changes_records(tiny_run: Path, tmp_path: Path) -> None:
    import shutil

    from sparta_hpc import jobs

    run_dir = tmp_path / "run"
    shutil.copytree(tiny_run, run_dir)
    config = run_dir / "config.yaml"
    config.write_text(config.read_text().replace("units_per_task: 64", "units_per_task: 3"))
    before = eval_files(run_dir)
    shutil.rmtree(run_dir / "iter_001/evaluate/iter_1")
    assert [jobs.evaluate_shard(str(run_dir), 1, i) for i in range(3)] == [18, 18, 12]
    assert eval_files(run_dir) == before


@pytest.mark.slow
def test_alpaca_run_is_scored_by_the_eval_judge(tmp_path: Path) -> None:
    data = tmp_path / "data" / "alpaca"
    for split, n in (("train", 8), ("val", 3), ("test", 2)):
        examples = [
            TaskExample(id=f"alpaca/{split}/{i}", prompt=f"Name {i + 2} colours.", answer="red").to_dict()
            for i in range(n)
        ]
        write_jsonl(data / f"{split}.jsonl", examples)
    judge = ["eval.judge_model.name=judge", "eval.judge_model.base=tiny", "eval.judge_model.adapter=tiny"]
    over = ["run.iterations=1", "plan.num_prompts=4", "task.name=alpaca", f"task.data_dir={data.parent}"]
    launch(tmp_path / "run", *over, *judge, "eval.judge_method=logprob")
    run = RunDir(tmp_path / "run")
    records = [EvalRecord.from_dict(r) for p in eval_files(run.root) for r in read_jsonl(run.root / p)]
    assert len(records) == 2 * 4 * (3 + 2)
    assert all(1.0 <= r.score <= 10.0 and r.judge_output == "" and r.extracted is None for r in records)
    assert (run.eval_judge_adapter("judge") / "adapter_config.json").is_file()
    md = (results.write_results(run, tmp_path / "out")[2]).read_text()
    assert "Metric: judge score (1-10)" in md
