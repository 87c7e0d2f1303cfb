"""Per-stage time limits recommended from plan's estimate, and the a100x16 preset that uses them."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from sparta_hpc.cli import main
from sparta_hpc.config import load_config
from sparta_hpc.tools import time_limits
from sparta_hpc.tools.cost import plan_report

PAPER = str(Path(__file__).resolve().parents[2] / "configs" / "paper.yaml")


def test_recommendation_is_margin_times_estimate_plus_slack_rounded_up_with_a_floor() -> None:
    assert time_limits.recommend(0.0) == time_limits.FLOOR_MIN
    assert time_limits.recommend(9.2) == 30  # 2 x 9.2 + 10 = 28.4, rounded up to 5
    assert time_limits.recommend(60.0) == 130
    assert time_limits.recommend(61.0) == 135
    values = [time_limits.recommend(m / 10) for m in range(0, 3000, 7)]
    assert values == sorted(values) and all(v % time_limits.ROUND_MIN == 0 for v in values)


def test_estimate_per_task_is_the_longest_task_of_any_iteration() -> None:
    report = plan_report(load_config(PAPER))
    minutes = time_limits.task_minutes(report)
    row = report["iterations"][0]["stages"]["train"]
    assert minutes["train"] == pytest.approx(60 * row["gpu_hours"] / row["tasks"] / row["gpus_per_task"])
    assert "evaluate" not in minutes  # no estimate without the prepared data
    more = plan_report(load_config(PAPER, ["generate.max_new_tokens=2048"]))
    assert time_limits.task_minutes(more)["generate"] > minutes["generate"]


def test_the_a100x16_preset_uses_the_recommended_limits(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as e:
        main(["plan", "--config", PAPER, "cluster=a100x16", "--json"])
    assert e.value.code == 0
    limits = json.loads(capsys.readouterr().out)["time_limits"]
    assert set(limits) == {"generate", "train"}  # combat layout (one base): generate tasks judge too
    for row in limits.values():
        assert row["configured_min"] == row["recommended_min"]
    with pytest.raises(SystemExit):
        main(["plan", "--config", PAPER, "cluster=a100x16", "run.stage_layout=separate", "--json"])
    limits = json.loads(capsys.readouterr().out)["time_limits"]
    assert set(limits) == {"generate", "judge", "train"}
    assert limits["judge"]["configured_min"] == limits["judge"]["recommended_min"]
    assert limits["generate"]["configured_min"] >= limits["generate"]["recommended_min"]


def test_plan_text_flags_limits_far_above_or_below_the_estimate(capsys: pytest.CaptureFixture[str]) -> None:
    overrides = ["cluster=a100x16", "cluster.train.timeout_min=480", "cluster.judge.timeout_min=1"]
    overrides.append("run.stage_layout=separate")
    with pytest.raises(SystemExit):
        main(["plan", "--config", PAPER, *overrides])
    out = capsys.readouterr().out
    lines = {line.split()[0]: line for line in out.split("time limits per task")[1].splitlines()[1:] if line}
    assert "far above" in lines["train"] and "configured   480 min" in lines["train"]
    assert "below the estimate" in lines["judge"]
    assert "<-" not in lines["generate"]
