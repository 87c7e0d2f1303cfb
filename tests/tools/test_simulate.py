"""``sparta-hpc simulate``: known answers of the simulated tournament (sparta_hpc/tools/sim_model.py) and the
command's sweeps, tables and errors (sparta_hpc/tools/simulate.py). Small scale: the whole file takes seconds.
"""

from __future__ import annotations

import argparse
import csv
import json
import math
from pathlib import Path

import numpy as np
import pytest

from sparta_hpc import cli
from sparta_hpc.tools import simulate
from sparta_hpc.tools.sim_model import SimConfig, SimRun, herfindahl, judge_iteration, ranks, spearman
from sparta_hpc.tools.sim_model import simulate as simulate_run

SMALL = ["plan.num_prompts=300", "sim.iterations=3", "sim.players=6", "plan.k=3"]
"""A small tournament: 6 players x 300 prompts x 3 iterations (about 0.05 s a run)."""


def runs(*overrides: str, seeds: range = range(3), profile: str = "paper") -> list[SimRun]:
    (setting,) = simulate.expand(profile, [*SMALL, *overrides], [])
    return [simulate_run(setting.plan, setting.rate, setting.sim, seed) for seed in seeds]


def final(results: list[SimRun], metric: str) -> list[float]:
    return [r.metrics[-1][metric] for r in results]


def mean(values: list[float]) -> float:
    return sum(values) / len(values)


def test_rank_helpers_on_known_values() -> None:
    assert ranks([3.0, 1.0, 3.0, 2.0]) == [3.5, 1.0, 3.5, 2.0]
    assert spearman([1, 2, 3, 4], [10, 20, 30, 40]) == pytest.approx(1.0)
    assert spearman([1, 2, 3, 4], [4, 3, 2, 1]) == pytest.approx(-1.0)
    assert spearman([1, 2, 3], [5, 5, 5]) != spearman([1, 2, 3], [5, 5, 5])  # nan: a constant side
    assert spearman([1, 2, 3, 4], [1, 1, 2, 3]) == pytest.approx(0.9486832980505138)
    assert herfindahl([100.0] * 10) == pytest.approx(0.1)
    assert herfindahl([10.0, 90.0]) == pytest.approx(0.82)


def test_perfect_judges_recover_the_true_order() -> None:
    """Noise 0, no bias: a score is the rounded true value, so every kept pair is right and, after enough
    matches, the ratings order the players exactly as their qualities do (under any seed)."""
    perfect = runs("sim.judge_noise=0", "sim.quality=even:2:9", "rate.gain=schedule")
    assert final(perfect, "spearman") == [1.0, 1.0, 1.0]
    assert all(m["pair_accuracy"] == 1.0 for r in perfect for m in r.metrics)
    assert all(r.ratings[-1]["p5"] > r.ratings[-1]["p4"] > r.ratings[-1]["p0"] for r in perfect)
    noisy = runs("sim.judge_noise=3", "sim.quality=even:2:9", "rate.gain=schedule")
    assert all(m["pair_accuracy"] < 0.95 for r in noisy for m in r.metrics)


def test_pure_noise_judges_rank_no_better_than_chance() -> None:
    """Scores independent of quality (judge_signal 0): the rank correlation averages near 0 over seeds and
    about half of the pairs are right; honest judges on the same matches do far better."""
    seeds = range(8)
    noise = runs("sim.judge_signal=0", "sim.players=8", "plan.k=5", "rate.gain=schedule", seeds=seeds)
    assert abs(mean(final(noise, "spearman"))) < 0.3
    accuracy = mean([m["pair_accuracy"] for r in noise for m in r.metrics])
    assert abs(accuracy - 0.5) < 0.03
    honest = runs("sim.players=8", "plan.k=5", "rate.gain=schedule", seeds=seeds)
    assert mean(final(honest, "spearman")) > 0.9
    assert mean([m["pair_accuracy"] for r in honest for m in r.metrics]) > 0.8


def test_a_shill_judge_hurts_in_proportion_to_its_reputation() -> None:
    """One judge adds 10 to every response of p0 (the worst player). SPARTA has no check of a judge's
    honesty: a judge's weight is its reputation as a player. So the best player as shill (the heaviest judge)
    lifts p0 and ruins the pairs, while a weak player as shill (rated near the floor under the constant gain)
    is down-weighted by its low reputation and does little harm."""
    honest = runs()
    top = runs("sim.shill=5", "sim.shill_target=0")
    weak = runs("sim.shill=1", "sim.shill_target=0")
    acc = {
        name: mean(final(r, "pair_accuracy"))
        for name, r in (("honest", honest), ("top", top), ("weak", weak))
    }
    assert acc["top"] < acc["weak"] - 0.05
    assert acc["weak"] > acc["honest"] - 0.03
    place = {
        name: mean([ranks(list(x.ratings[-1].values()))[0] for x in r])
        for name, r in (("honest", honest), ("top", top), ("weak", weak))
    }
    assert place["honest"] < 2 and place["top"] > place["weak"] + 2


def test_every_parse_failing_means_no_rating_change_and_no_pairs() -> None:
    for policy in ("exclude", "neutral"):
        (result,) = runs("sim.parse_failure=1", f"rate.failed_judgment={policy}", seeds=range(1))
        assert all(m["pairs"] == 0 for m in result.metrics)
        assert all(rating == 100.0 for rating in result.ratings[-1].values())
        assert math.isnan(result.metrics[-1]["spearman"]) and math.isnan(result.metrics[-1]["pair_accuracy"])


def test_judgments_follow_the_model() -> None:
    """Scores are integers 1..10, the competitors never judge, a share parse_failure of scores is None."""
    sim = SimConfig(players=5, parse_failure=0.25, judge_bias=20.0)
    quality = np.array(sim.qualities(0))
    setup = (np.full(5, 20.0), np.zeros((5, 5)))
    matches = [(f"m{i}", (i % 5, (i + 1) % 5), 0.0) for i in range(400)]
    judged, values = judge_iteration(sim, 0, 0, matches, [f"p{i}" for i in range(5)], quality, setup)
    scores = [s for m in judged for pair in m.judgments.values() if pair for s in pair]
    assert all(set(m.judgments) == {f"p{i}" for i in range(5)} - set(m.players) for m in judged)
    assert 0.2 < scores.count(None) / len(scores) < 0.3
    assert {s for s in scores if s is not None} == {10.0}  # bias 20: clipped to 10
    assert len(values) == 800


def test_learning_moves_every_quality_by_the_pair_accuracy() -> None:
    (result,) = runs("sim.learn_rate=1", seeds=range(1))
    q = [r[0] for r in result.qualities]
    expected = q[0] + sum(m["pair_accuracy"] - 0.5 for m in result.metrics[:-1])
    assert q[-1] == pytest.approx(expected) and q[-1] > q[0] + 0.5
    assert [m["mean_quality"] for m in result.metrics] == pytest.approx([mean(x) for x in result.qualities])


def run_command(argv: list[str], capsys: pytest.CaptureFixture[str]) -> tuple[int, str]:
    parser = cli.build_parser()
    args = parser.parse_args(["simulate", *argv])
    code = simulate.main(args)
    captured = capsys.readouterr()
    return code, captured.out + captured.err


OUTPUTS = ("summary.md", "summary.csv", "iterations.csv", "runs.csv", "settings.json")


def test_the_same_seed_gives_the_same_tables(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    argv = ["--seeds", "2", "--sweep", "rate.gain=constant,schedule", "--sweep", "plan.alpha=0.2,0.6", *SMALL]
    texts = []
    for name, extra in (("a", []), ("b", ["--no-plots"])):
        code, out = run_command([*argv, *extra, "--out", str(tmp_path / name)], capsys)
        assert code == 0, out
        texts.append({f: (tmp_path / name / f).read_text() for f in OUTPUTS})
    assert texts[0] == texts[1]
    assert all((tmp_path / "a" / f"{m}.png").stat().st_size > 1000 for m in ("spearman", "floor"))
    assert not list((tmp_path / "b").glob("*.png"))
    assert runs(seeds=range(1))[0].ratings == runs(seeds=range(1))[0].ratings
    assert runs(seeds=range(1))[0].ratings != runs(seeds=range(1, 2))[0].ratings
    rows = list(csv.DictReader(texts[0]["summary.csv"].splitlines()))
    assert [(r["rate.gain"], r["plan.alpha"]) for r in rows] == [
        ("constant", "0.2"),
        ("constant", "0.6"),
        ("schedule", "0.2"),
        ("schedule", "0.6"),
    ]
    assert all(r["iteration"] == "2" for r in rows)
    assert len(texts[0]["iterations.csv"].splitlines()) == 1 + 4 * 3
    assert len(texts[0]["runs.csv"].splitlines()) == 1 + 4 * 2 * 3
    settings = json.loads(texts[0]["settings.json"])
    assert settings["rate.gain=schedule plan.alpha=0.2"]["plan"]["alpha"] == 0.2
    assert "| rate.gain=constant plan.alpha=0.6 |" in texts[0]["summary.md"]


def test_any_rate_or_plan_key_can_be_swept(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """Keys go through the config loader: ``rate.min_margin`` (never named by the simulator) takes effect,
    and ``profile`` is a key like the others."""
    argv = [
        "--seeds",
        "1",
        "--no-plots",
        "--sweep",
        "rate.min_margin=0,1.5",
        "--sweep",
        "profile=paper,released",
    ]
    argv += SMALL
    code, out = run_command([*argv, "--out", str(tmp_path)], capsys)
    assert code == 0, out
    rows = {r["setting"]: r for r in csv.DictReader((tmp_path / "summary.csv").read_text().splitlines())}
    for profile in ("paper", "released"):
        kept = float(rows[f"rate.min_margin=1.5 profile={profile}"]["pairs_mean"])
        assert kept < float(rows[f"rate.min_margin=0 profile={profile}"]["pairs_mean"]) - 50
    settings = json.loads((tmp_path / "settings.json").read_text())
    assert settings["rate.min_margin=0 profile=released"]["rate"]["gain"] == "schedule"


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["rate.nope=1"], "unknown key 'rate.nope'; valid keys: rate.initial_rating"),
        (["--sweep", "sim.nope=1,2"], "unknown key 'sim.nope'; valid keys: sim.players"),
        (["judge.method=logprob"], "simulate reads only profile and the keys of plan.*, rate.* and sim.*"),
        (["--sweep", "rate.gain=constant,sometimes"], "rate.gain='sometimes' is not valid"),
        (["sim.quality=even:4"], "sim.quality='even:4': expected even:LO:HI"),
        (["sim.players=x"], "sim.players='x'"),
        (["sim.players=4"], "plan.k=5 but only 3 opponents exist"),
        (["--sweep", "plan.alpha=0.2,0.2"], "distinct, non-empty values"),
        (["--seeds", "0"], "need seeds >= 1"),
    ],
)
def test_a_bad_option_is_named_and_nothing_is_written(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], argv: list[str], message: str
) -> None:
    code, out = run_command([*argv, "--out", str(tmp_path / "out")], capsys)
    assert code == 2 and message in out, out
    assert not (tmp_path / "out").exists()


def test_the_cli_registers_simulate() -> None:
    args = cli.build_parser().parse_args(["simulate", "--out", "x", "--sweep", "plan.k=1,2", "sim.players=4"])
    assert isinstance(args, argparse.Namespace) and args.sweep == ["plan.k=1,2"]
    assert args.overrides == ["sim.players=4"] and args.seeds == 5 and args.profile == "paper"
