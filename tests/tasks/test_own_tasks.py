"""Tasks of your own (``task.metric``, ``task.template``, ``task.answer_pattern``), judge prompts from a file,
and the command line: list-item overrides, "did you mean", ``--version``, a closed pipe.

Bad task configs are refused in the table of tests/config/test_bad_configs.py; here: how a good one prompts
and scores, that a bad one leaves no run directory behind, and one tiny run through plan, evaluate and
report."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from sparta_hpc.config import load_config
from sparta_hpc.errors import ConfigError, TaskDataError
from sparta_hpc.files import read_jsonl, write_jsonl
from sparta_hpc.jobs.judge import judge_requests
from sparta_hpc.method import judging
from sparta_hpc.method.types import Match
from sparta_hpc.run import launcher
from sparta_hpc.store.rundir import RunDir
from sparta_hpc.store.state import RunState, save_state
from sparta_hpc.tasks import evaluation, metrics
from sparta_hpc.tasks.evaluation import EvalRecord
from sparta_hpc.tasks.pool import prompt_pool
from sparta_hpc.tasks.prompts import build_prompt, render_judge
from sparta_hpc.tasks.schema import TaskExample
from tests.tasks.test_evaluation import FakeEngine, answers

ROOT = Path(__file__).resolve().parents[2]
PYTHON_ENV = {**os.environ, "HF_HUB_OFFLINE": "1", "TOKENIZERS_PARALLELISM": "false"}
RUBRIC = 'Task: {question}\nReply: {response}\nIs the reply right? Answer {"score": N}, N from 1 to 10.\n'


def example(answer: str | None = "Paris", choices: tuple[str, ...] = (), **metadata: object) -> TaskExample:
    return TaskExample(
        id="t/0", prompt="Capital of France?", answer=answer, choices=choices, metadata=metadata
    )


def write_task(data: Path, name: str = "capitals", n: int = 4) -> Path:
    """``data/<name>/{train,val,test}.jsonl``: questions with a string answer and a ``country`` field."""
    countries = ["France", "Italy", "Spain", "Peru", "Chile", "Japan"]
    capitals = ["Paris", "Rome", "Madrid", "Lima", "Santiago", "Tokyo"]
    for split in ("train", "val", "test"):
        rows = [
            TaskExample(
                id=f"{name}/{split}/{i}",
                prompt="What is its capital?",
                answer=capitals[i],
                metadata={"country": countries[i]},
            ).to_dict()
            for i in range(n)
        ]
        write_jsonl(data / name / f"{split}.jsonl", rows)
    return data


# ---------------------------------------------------------------- templates and metrics


def test_template_fills_metadata_fields_once_and_names_a_missing_one() -> None:
    e = example(country="France", n=3)
    assert (
        build_prompt("x", e, "[{metadata.country}/{metadata.n}] {prompt}") == "[France/3] Capital of France?"
    )
    tricky = example(country="{prompt}")  # inserted text is never scanned again
    assert build_prompt("x", tricky, "{metadata.country}: {prompt}") == "{prompt}: Capital of France?"
    assert build_prompt("x", e, "\\frac{a}{b} {prompt}") == "\\frac{a}{b} Capital of France?"
    with pytest.raises(ValueError, match=r"t/0: the template uses \{metadata.city\}.*no key 'city'"):
        build_prompt("x", e, "{metadata.city} {prompt}")


@pytest.mark.parametrize(
    ("metric", "pattern", "output", "gold", "extracted", "score"),
    [
        ("exact", None, "The answer is: the Paris.\nMore text", "Paris", "the Paris", 1.0),
        ("exact", None, "Lyon", "Paris", "Lyon", 0.0),
        ("exact", r"<(\w+)>", "I think <Rome> no, <Paris>", "paris", "Paris", 1.0),
        ("exact", r"<(\w+)>", "no brackets", "Paris", None, 0.0),
        ("numeric", None, "So 3.50 dollars", "3.5", "3.5", 1.0),
        ("numeric", r"Total: (\S+)", "Total: 1,000 and 7", "1000", "1,000", 1.0),
        ("choice", None, "Answer: (B)", "B", "B", 1.0),
        ("choice", r"pick (\w)", "pick c", "C", "C", 1.0),
        ("f1", None, "Answer: big red dog", "red dog", "big red dog", 0.8),
    ],
)
def test_custom_metrics(
    metric: str, pattern: str | None, output: str, gold: str, extracted: str | None, score: float
) -> None:
    e = example(answer=gold, choices=("x", "y", "z") if metric == "choice" else ())
    assert metrics.extract_custom(metric, pattern, output, e) == extracted
    assert metrics.score_custom(metric, pattern, output, e) == pytest.approx(score)


def test_own_task_prompts_and_scores_through_the_config(tmp_path: Path) -> None:
    data = write_task(tmp_path / "data")
    over = ["task.name=capitals", f"task.data_dir={data}", "task.metric=exact"]
    cfg = load_config(None, [*over, "task.template='{metadata.country}: {prompt}'"])
    assert prompt_pool(cfg.task, 0)[1] == ("capitals/train/1", "Italy: What is its capital?")
    assert prompt_pool(load_config(None, over).task, 0)[1][1] == "What is its capital?"  # {prompt} alone
    requests, completions = answers("Answer: Rome", "Lima, I think")
    examples = {f"e{i}": example(answer="Rome") for i in range(2)}
    scored = evaluation.score_answers(cfg.task, cfg.eval, None, requests, completions, examples)
    assert scored == [("Rome", 1.0, None), ("Lima, I think", 0.0, None)]
    # an eval.tasks task keeps its own template and metric
    gsm = evaluation.unit_task(cfg.task, "gsm8k")
    assert (gsm.name, gsm.metric, gsm.template) == ("gsm8k", None, None)
    assert evaluation.metric_name("capitals", "f1") == "token F1"


def test_a_task_yaml_beside_the_data_describes_the_task(tmp_path: Path) -> None:
    data = write_task(tmp_path / "data")
    spec = data / "capitals" / "task.yaml"
    spec.write_text(
        "metric: exact\ntemplate: 'In {metadata.country}: {prompt}'\nanswer_pattern: 'is (\\w+)'\n"
    )
    over = ["task.name=capitals", f"task.data_dir={data}"]
    cfg = load_config(None, over)
    assert (cfg.task.metric, cfg.task.answer_pattern) == ("exact", "is (\\w+)")
    assert prompt_pool(cfg.task, 0)[0][1] == "In France: What is its capital?"
    # the config's own keys win, and a config that sets task.metric describes the task alone
    assert load_config(None, [*over, "task.template='{prompt}?'"]).task.template == "{prompt}?"
    alone = load_config(None, [*over, "task.metric=f1"]).task
    assert (alone.metric, alone.template, alone.answer_pattern) == ("f1", None, None)
    for text, message in [
        ("metric: exact\ntemplte: x\n", r"task.yaml: unknown key 'templte' \(did you mean 'template'\?\)"),
        ("metric: regex\n", r"task.yaml: task.metric='regex' is not valid"),
        ("metric: exact\ntemplate: no placeholder\n", r"task.yaml: task.template: .* has no \{prompt\}"),
        ("- exact\n", r"task.yaml: expected a mapping"),
    ]:
        spec.write_text(text)
        with pytest.raises(ConfigError, match=message):
            load_config(None, over)


def test_judge_metric_uses_the_eval_judge_and_its_rubric_file(tmp_path: Path) -> None:
    data = write_task(tmp_path / "data")
    over = ["task.name=capitals", f"task.data_dir={data}", "task.metric=judge"]
    over += ["eval.judge_model.name=j", "eval.judge_model.base=tiny"]
    cfg = load_config(None, over)
    assert evaluation.needs_judge(cfg.task, cfg.eval)
    requests, completions = answers("Rome", "Lima")
    examples = {f"e{i}": example() for i in range(2)}
    engine = FakeEngine(['{"score": 9}', "no"])
    scored = evaluation.score_answers(cfg.task, cfg.eval, engine, requests, completions, examples, RUBRIC)
    assert scored == [(None, 9.0, '{"score": 9}'), (None, None, "no")]
    assert engine.asked[0].prompt == render_judge(RUBRIC, "q0", "Rome")
    assert engine.asked[1].prompt.startswith("Task: q1\nReply: Lima\n")
    engine = FakeEngine(['{"score": 2}'])
    evaluation.score_answers(cfg.task, cfg.eval, engine, requests[:1], completions[:1], examples)
    assert engine.asked[0].prompt == judging.judge_prompt("q0", "Rome")  # no file: the built-in prompt


def test_judge_rubric_file_replaces_the_tournament_prompt(tmp_path: Path) -> None:
    rubric = tmp_path / "rubric.txt"
    rubric.write_text(RUBRIC)
    match = Match(
        match_id="m0", iteration=0, index=0, prompt_id="p0", prompt="2+2?", players=("tiny-a", "tiny-b")
    )
    responses = {("m0", "tiny-a"): "4", ("m0", "tiny-b"): "five"}
    default = judge_requests(load_config(None, []), 0, [match], responses)
    assert default[0].prompt == judging.judge_prompt("2+2?", "4", "default")
    cfg = load_config(None, [f"judge.rubric_file={rubric}"])
    own = judge_requests(cfg, 0, [match], responses)
    side = {"a": "4", "b": "five"}
    assert [r.prompt for r in own] == [render_judge(RUBRIC, "2+2?", side[r.request_id[-1]]) for r in own]
    assert len(own) == 2 * (len(cfg.models) - 2)
    assert [r.request_id for r in own] == [r.request_id for r in default]


def test_a_broken_own_task_leaves_no_run_directory(tmp_path: Path) -> None:
    data = write_task(tmp_path / "data")
    (data / "capitals" / "val.jsonl").write_text(json.dumps({"id": "v/0", "prompt": "q"}) + "\n")
    over = ("task.name=capitals", f"task.data_dir={data}", "task.metric=numeric")
    for overrides, error, message in [
        (over, TaskDataError, "val.jsonl: v/0: no answer; task.metric=numeric scores against it"),
        ((*over[:2], "task.metric=accurate"), ConfigError, "task.metric='accurate' is not valid"),
    ]:
        spec = launcher.LaunchSpec(overrides=overrides, run_dir=str(tmp_path / "run"))
        with pytest.raises(error, match=message):
            launcher.start(spec, log=lambda s: None)
        assert not (tmp_path / "run").exists()


# ---------------------------------------------------------------- the command line


def test_list_item_overrides_change_one_field_of_one_model() -> None:
    base = load_config(None, [])
    cfg = load_config(None, ["models.0.base=/models/a", "models[2].adapter=null", "eval.splits.0=val"])
    assert cfg.models[0].base == "/models/a" and cfg.models[2].adapter is None
    assert [m.name for m in cfg.models] == [m.name for m in base.models]
    assert cfg.models[1] == base.models[1] and cfg.models[3] == base.models[3]
    with pytest.raises(ConfigError, match=r"models.4.name=x: models has 4 entries \(models.0 .. models.3\)"):
        load_config(None, ["models.4.name=x"])
    with pytest.raises(ConfigError, match=r"unknown key 'models\[1\].nam' \(did you mean 'name'\?\)"):
        load_config(None, ["models[1].nam=x"])
    with pytest.raises(ConfigError, match=r"unknown key 'plan.kk' \(did you mean 'plan.k'\?\)"):
        load_config(None, ["plan.kk=1"])


def test_version_and_a_closed_pipe(tmp_path: Path) -> None:
    out = subprocess.run(
        [sys.executable, "-m", "sparta_hpc.cli", "--version"], cwd=ROOT, capture_output=True, text=True
    )
    assert out.returncode == 0 and out.stdout.strip().startswith("sparta-hpc 0.")
    run = RunDir(tmp_path / "run")
    save_state(run, RunState(config_hash="x", iterations_total=2))
    cmd = [sys.executable, "-m", "sparta_hpc.cli", "status", str(run.root), "--json"]
    proc = subprocess.Popen(cmd, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    assert proc.stdout is not None and proc.stderr is not None
    proc.stdout.close()  # the reader is gone before the command writes (as `| head -c0` would be)
    err = proc.stderr.read()
    assert proc.wait() == 141 and err == ""


# ---------------------------------------------------------------- a tiny run: plan, evaluate, report


@pytest.mark.slow
def test_own_task_runs_through_plan_evaluate_and_report(tmp_path: Path) -> None:
    data = write_task(tmp_path / "data")
    config = tmp_path / "own.yaml"
    task = {
        "name": "capitals",
        "data_dir": str(data),
        "template": "Country: {metadata.country}\n{prompt}",
        "metric": "f1",
        "answer_pattern": r"(?s)(.{1,12})$",
    }
    config.write_text(
        yaml.safe_dump({**yaml.safe_load((ROOT / "configs/debug.yaml").read_text()), "task": task})
    )
    # judging decodes 2 tokens: the tiny models never write a score, no pair survives and nothing trains
    over = ["run.iterations=1", "plan.num_prompts=4", "judge.method=generate", "judge.max_new_tokens=2"]
    over += ["generate.max_new_tokens=4", "eval.max_new_tokens=6", "eval.max_examples=3"]
    cmd = [sys.executable, str(ROOT / "launch.py"), "--config", str(config), "--cluster", "inline"]
    proc = subprocess.run(
        [*cmd, "--run-dir", str(tmp_path / "run"), *over],
        cwd=ROOT,
        env=PYTHON_ENV,
        capture_output=True,
        text=True,
    )
    assert proc.returncode == 0, (proc.stdout + proc.stderr)[-3000:]
    run = tmp_path / "run"
    matches = read_jsonl(run / "iter_000/plan/matches.jsonl")
    assert matches and all(m["prompt"].startswith("Country: ") for m in matches)
    assert all(m["prompt"].endswith("\nWhat is its capital?") for m in matches)
    records = [
        EvalRecord.from_dict(r)
        for p in sorted(run.glob("iter_000/evaluate/*/*/*.jsonl"))
        for r in read_jsonl(p)
    ]
    assert len(records) == 2 * 4 * 2 * 3  # (initial, iter_0) x 4 players x (val, test) x 3 examples
    for r in records:
        gold = {"0": "Paris", "1": "Rome", "2": "Madrid"}[r.id.rsplit("/", 1)[1]]
        assert r.extracted == (r.output.strip()[-12:].strip() or None)
        assert r.score == metrics.token_f1(r.extracted or "", gold) if r.extracted else r.score == 0.0
    report = subprocess.run(
        [sys.executable, "-m", "sparta_hpc.cli", "report", str(run), "--out", str(tmp_path / "report")],
        cwd=ROOT,
        env=PYTHON_ENV,
        capture_output=True,
        text=True,
    )
    assert report.returncode == 0, report.stderr[-3000:]
    md = (tmp_path / "report" / "report.md").read_text()
    assert "capitals" in md and "token F1" in md
