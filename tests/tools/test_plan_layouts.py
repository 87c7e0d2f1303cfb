"""``sparta-hpc plan`` for both stage layouts: model starts, start-up vs compute, idle GPUs, queue waits, the
decode batch and the train-stage options, each recounted here from the config (docs/plan.md)."""

from __future__ import annotations

import json
import math
from typing import Any

import pytest

from sparta_hpc.cli import main
from sparta_hpc.config import CONFIG_DIR, load_config
from sparta_hpc.config.schema import SpartaConfig
from sparta_hpc.errors import ConfigError
from sparta_hpc.tools.cost import plan_report, stage_task_seconds
from sparta_hpc.tools.cost_model import GPU_TYPES, PRESETS, decode_mfu

PAPER = str(CONFIG_DIR / "paper.yaml")
EVAL_500 = ["cluster=a100x16", "eval.max_examples=500"]
"""The issue's setup: the paper on 16 A100-40GB, evaluation of 500 examples per split every iteration."""


def _paper(*overrides: str) -> tuple[SpartaConfig, dict[str, Any]]:
    cfg = load_config(PAPER, [*EVAL_500, *overrides])
    return cfg, plan_report(cfg)


def _units(cfg: SpartaConfig, labels: int) -> int:
    """Evaluation units of ``labels`` model labels: player x task x split x shard."""
    return labels * len(cfg.models) * (1 + len(cfg.eval.tasks)) * len(cfg.eval.splits) * cfg.eval.num_shards


def test_separate_layout_starts_every_task_of_every_stage() -> None:
    cfg, report = _paper("run.stage_layout=separate")
    m, per_task = len(cfg.models), cfg.eval.units_per_task
    shards = cfg.generate.num_shards + cfg.judge.num_shards
    first = shards + m + math.ceil(_units(cfg, 2) / per_task)  # iteration 0 evaluates initial and iter_0
    later = shards + m + math.ceil(_units(cfg, 1) / per_task)
    starts = [it["starts"] for it in report["iterations"]]
    assert starts == [first] + [later] * (cfg.run.iterations - 1)
    assert (first, later) == (74, 54)  # the count
    assert report["final_evaluation_starts"] == 0 and report["stage_layout"] == "separate"
    assert report["total_starts"] == sum(starts)


@pytest.mark.parametrize("shards", [8, 16])
def test_combat_layout_folds_evaluation_into_the_combat_tasks(shards: int) -> None:
    cfg, report = _paper("run.stage_layout=combat", f"generate.num_shards={shards}")
    m, iterations = len(cfg.models), cfg.run.iterations
    per_iteration = shards + len(cfg.models)  # one engine per shard, one trainer per player
    final_units = _units(cfg, 1)
    slots = cfg.cluster.num_gpus // cfg.engine.tensor_parallel_size
    final = math.ceil(final_units / math.ceil(final_units / min(final_units, slots)))
    starts = [it["starts"] for it in report["iterations"]]
    assert starts == [per_iteration] * (iterations - 1) + [per_iteration + final]
    assert per_iteration <= 26 and final <= 16 and report["final_evaluation_starts"] == final
    stages = report["iterations"][0]["stages"]
    assert stages["combat"]["tasks"] == shards and stages["train"]["tasks"] == m
    assert stages["evaluate"]["tasks"] == 0 and "initial models" in stages["combat"]["note"]
    # Over the run, combat + the last evaluation do the work of generate + judge + evaluate (separate).
    separate = _paper("run.stage_layout=separate", f"generate.num_shards={shards}")[1]["iterations"]
    for key in ("prefill_tokens", "decode_tokens"):
        old = sum(it["stages"][s][key] for it in separate for s in ("generate", "judge", "evaluate"))
        assert sum(it["stages"][s][key] for it in report["iterations"] for s in ("combat", "evaluate")) == old


def test_same_work_costs_the_same_compute_in_both_layouts() -> None:
    """With the same engine batch both layouts compute alike; they differ by start-ups (and idle GPUs)."""
    separate, combat = _paper("run.stage_layout=separate")[1], _paper("run.stage_layout=combat")[1]
    compute = [sum(r["compute_gpu_hours"].values()) for r in (separate, combat)]
    assert compute[0] == pytest.approx(compute[1])
    gpu = separate["gpu"]
    for report in (separate, combat):
        engine = (
            sum(c["tasks"] for it in report["iterations"] for c in it["stages"].values())
            * gpu["engine_start_s"]
        )
        trainer = report["gpu_hours"]["train"] - report["compute_gpu_hours"]["train"]
        assert trainer == pytest.approx(10 * 8 * gpu["train_start_s"] / 3600)
        assert report["total_startup_gpu_hours"] == pytest.approx(
            (engine - 10 * 8 * gpu["engine_start_s"]) / 3600 + trainer
        )
        assert report["total_gpu_hours"] == pytest.approx(
            report["total_startup_gpu_hours"] + sum(report["compute_gpu_hours"].values())
        )
    assert combat["total_gpu_hours"] < separate["total_gpu_hours"]


def test_idle_gpus_per_stage() -> None:
    cfg, report = _paper("run.stage_layout=separate")
    stages, g = report["iterations"][1]["stages"], cfg.cluster.num_gpus
    assert stages["generate"]["idle_gpus"] == g - cfg.generate.num_shards == 8
    assert stages["judge"]["idle_gpus"] == 0
    train = stages["train"]
    assert train["idle_gpus"] == g - len(cfg.models) == 6
    assert train["idle_gpu_hours"] == pytest.approx(6 * train["task_s"] / 3600)  # one wave of equal jobs
    evaluate = stages["evaluate"]  # 20 tasks on 16 GPUs: two waves, 12 GPUs idle in the second
    assert evaluate["waves"] == 2 and evaluate["idle_gpus"] == 0
    assert evaluate["idle_gpu_hours"] == pytest.approx(12 * evaluate["task_s"] / 3600)
    assert any("generate.num_shards=16 would use them" in note for note in report["notes"])


def test_queue_wait_adds_wall_time_not_gpu_hours(capsys: pytest.CaptureFixture[str]) -> None:
    argv = ["plan", "--config", PAPER, "--cluster-preset", "a100x16", "eval.max_examples=500",
            "run.stage_layout=separate", "--json"]  # fmt: skip
    reports = []
    for extra in ([], ["--queue-wait-s", "300"]):
        with pytest.raises(SystemExit):
            main(argv + extra)
        reports.append(json.loads(capsys.readouterr().out))
    stages_with_tasks = sum(1 for it in reports[0]["iterations"] for c in it["stages"].values() if c["tasks"])
    assert not any("asks for no GPU" in note for note in reports[0]["notes"])  # the preset asks for GPUs
    assert reports[1]["total_gpu_hours"] == pytest.approx(reports[0]["total_gpu_hours"])
    assert reports[1]["total_wall_hours"] - reports[0]["total_wall_hours"] == pytest.approx(
        stages_with_tasks * 300 / 3600
    )


def test_decode_mfu_follows_the_engine_batch() -> None:
    cfg, gpu, shape = load_config(PAPER), GPU_TYPES["A100-40GB"], PRESETS["Qwen2.5-7B"]
    at = {n: decode_mfu(cfg, gpu, shape, requests=n, prompt=94, new=512) for n in (16, 64, 128, 512)}
    assert at[64] == (64, pytest.approx(gpu.decode_mfu))  # the calibrated point
    assert at[16][1] < at[64][1] < at[128][1] < at[512][1] <= gpu.prefill_mfu
    assert at[512][0] == cfg.engine.max_num_seqs  # vLLM decodes at most max_num_seqs at once
    small = load_config(PAPER, ["engine.max_num_seqs=64"])
    assert decode_mfu(small, gpu, shape, requests=512, prompt=94, new=512) == at[64]
    hf = load_config(PAPER, ["engine.kind=hf", "engine.batch_size=16"])
    assert decode_mfu(hf, gpu, shape, requests=512, prompt=94, new=512)[0] == 16
    big = load_config(PAPER, ["generate.chunk_size=512", "judge.chunk_size=512", "eval.chunk_size=512"])
    assert plan_report(big)["total_gpu_hours"] < plan_report(small)["total_gpu_hours"]


def test_stage_task_seconds_per_cluster_section() -> None:
    cfg, report = _paper("run.stage_layout=combat")
    seconds = stage_task_seconds(cfg)
    assert set(seconds) == {"generate", "train", "evaluate"}  # a combat task runs as a generate task
    longest = max(it["stages"]["combat"]["task_s"] for it in report["iterations"])
    assert seconds["generate"] == pytest.approx(longest)
    train = report["iterations"][0]["stages"]["train"]
    assert seconds["train"] == pytest.approx(train["start_s"] + train["compute_s"])
    separate = stage_task_seconds(load_config(PAPER, ["run.stage_layout=separate"]))
    assert set(separate) == {"generate", "judge", "train"}  # evaluation not counted: example counts unknown


def test_train_options_price_the_idle_gpus() -> None:
    cfg, report = _paper()
    rows = {row["layout"]: row for row in report["train_options"]}
    train = report["iterations"][0]["stages"]["train"]
    one = rows["one rank per player"]
    assert one["wall_s"] == pytest.approx(train["task_s"]) and one["starts"] == len(cfg.models)
    assert one["gpu_hours"] == pytest.approx(train["gpu_hours"])
    assert one["cluster_gpu_hours"] == pytest.approx(cfg.cluster.num_gpus * train["task_s"] / 3600)
    spare = rows["two ranks for 6 of 10 players"]  # the 6 idle GPUs: same wall time, more GPU-hours
    assert spare["wall_s"] == pytest.approx(one["wall_s"]) and spare["gpu_hours"] > one["gpu_hours"]
    assert spare["changes_results"] and not one["changes_results"]
    packed = rows["two players per task"]  # half the start-ups, twice the wall time
    assert packed["starts"] == 5 and packed["gpu_hours"] < one["gpu_hours"]
    assert packed["wall_s"] == pytest.approx(train["start_s"] + 2 * train["compute_s"])
    everyone = rows["two ranks for every player"]  # 20 GPUs asked of 16: two waves
    assert everyone["wall_s"] == pytest.approx(2 * (train["start_s"] + train["compute_s"] / 2))


def test_layout_values() -> None:
    players = ", ".join(f"{{name: p{i}, base: /{i % 2}/Qwen2.5-7B}}" for i in range(4))
    two_bases = load_config(PAPER, [f"models=[{players}]", "plan.k=2"])
    assert plan_report(two_bases)["stage_layout"] == "separate"  # auto: combat only with one base
    assert plan_report(load_config(PAPER))["stage_layout"] == "combat"
    with pytest.raises(ConfigError, match=r"run\.stage_layout='both'.*auto, separate, combat"):
        load_config(PAPER, ["run.stage_layout=both"])
