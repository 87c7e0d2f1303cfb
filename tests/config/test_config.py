"""Config: defaults <- profile <- YAML <- overrides, and every refusal names the key or file."""

from __future__ import annotations

from pathlib import Path

import pytest

from sparta_hpc.config import (
    CONFIG_DIR,
    check_paths,
    config_hash,
    differing_keys,
    load_config,
    result_keys,
    to_yaml,
)
from sparta_hpc.errors import ConfigError


def test_demo_config_loads_with_its_values() -> None:
    cfg = load_config()
    assert cfg.player_names == ["tiny-a", "tiny-b", "tiny-c", "tiny-d"]
    assert cfg.run.iterations == 3 and cfg.plan.num_prompts == 24
    assert cfg.judge.method == "logprob"
    assert cfg.rate.gain == "constant"  # paper profile


def test_paper_config_is_the_papers_setup() -> None:
    cfg = load_config(CONFIG_DIR / "paper.yaml")
    assert len(cfg.models) == 10 and {m.base for m in cfg.models} == {"/path/to/Qwen2.5-7B-Instruct"}
    assert (cfg.run.iterations, cfg.plan.num_prompts, cfg.plan.alpha, cfg.plan.k) == (8, 1000, 0.6, 5)
    with pytest.raises(ConfigError, match=r"models\[0\]\.base=.*path does not exist"):
        check_paths(cfg)


def test_released_profile_sets_its_defaults_and_explicit_keys_still_win() -> None:
    cfg = load_config(overrides=["run.profile=released"])
    assert (cfg.rate.gain, cfg.rate.weights, cfg.rate.failed_judgment) == ("schedule", "static", "neutral")
    assert (
        cfg.rate.keep_deltas is False and cfg.plan.prompts == "fixed" and cfg.judge.max_prompt_tokens == 512
    )
    assert (cfg.plan.schedule, cfg.judge.rubric) == ("fixed", "released")
    assert (cfg.plan.pairing, cfg.rate.aggregation) == ("reputation", "reputation")  # as the paper's
    cfg = load_config(overrides=["run.profile=released", "rate.weights=normal"])
    assert cfg.rate.weights == "normal" and cfg.rate.gain == "schedule"


def test_paper_profile_resamples_and_shows_no_example_score() -> None:
    cfg = load_config(overrides=["run.profile=paper"])
    assert (cfg.plan.prompts, cfg.plan.schedule, cfg.plan.pairing) == ("resample", "resample", "reputation")
    assert (cfg.judge.rubric, cfg.rate.aggregation) == ("default", "reputation")


def test_ablation_keys_load_from_overrides() -> None:
    keys = ["plan.pairing=random", "plan.schedule=fixed", "rate.aggregation=uniform", "judge.rubric=released"]
    cfg = load_config(overrides=keys)
    assert (cfg.plan.pairing, cfg.plan.schedule) == ("random", "fixed")
    assert (cfg.rate.aggregation, cfg.judge.rubric) == ("uniform", "released")


def test_overrides_are_typed() -> None:
    cfg = load_config(overrides=["plan.alpha=0.25", "judge.max_prompt_tokens=300", "rate.keep_deltas=false"])
    assert cfg.plan.alpha == 0.25 and cfg.judge.max_prompt_tokens == 300 and cfg.rate.keep_deltas is False


@pytest.mark.parametrize(
    ("override", "message"),
    [
        (
            "plan.alfa=0.5",
            r"unknown key 'plan.alfa' \(did you mean 'plan.alpha'\?\); valid keys: plan.num_prompts, "
            r"plan.prompts, plan.schedule, "
            r"plan.pairing, plan.alpha, plan.k$",
        ),
        ("nosuch.key=1", r"unknown key 'nosuch'"),
        ("plan.alpha=1.5", r"plan.alpha=1.5 must be in \[0, 1\]"),
        ("plan.alpha=abc", r"plan.alpha"),
        ("plan.k=4", r"plan.k=4 but only 3 opponents exist"),
        ("judge.method=vote", r"judge.method='vote' is not valid; allowed values: generate, logprob"),
        ("judge.rubric=terse", r"judge.rubric='terse' is not valid; allowed values: default, released"),
        ("plan.pairing=elo", r"plan.pairing='elo' is not valid; allowed values: reputation, random"),
        ("plan.schedule=once", r"plan.schedule='once' is not valid; allowed values: resample, fixed"),
        (
            "rate.aggregation=mean",
            r"rate.aggregation='mean' is not valid; allowed values: reputation, uniform",
        ),
        ("rate.gain=fast", r"rate.gain='fast' is not valid; allowed values: constant, schedule"),
        ("run.profile=mine", r"run.profile='mine' is not valid; allowed values: paper, released"),
        ("cluster.backend=k8s", r"cluster.backend='k8s' is not valid"),
        ("plan.alpha", r"must look like key=value"),
    ],
)
def test_bad_overrides_are_refused_with_the_key(override: str, message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        load_config(overrides=[override])


def _write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "c.yaml"
    path.write_text(text)
    return path


def test_bad_models_are_refused(tmp_path: Path) -> None:
    two = "models:\n  - {name: a, base: tiny}\n  - {name: b, base: tiny}\nplan: {k: 1}\n"
    with pytest.raises(ConfigError, match="2 given, SPARTA needs at least 3"):
        load_config(_write(tmp_path, two))
    dup = "models:\n" + "".join(f"  - {{name: {n}, base: tiny}}\n" for n in "aab") + "plan: {k: 1}\n"
    with pytest.raises(ConfigError, match=r"duplicate model names \['a'\]"):
        load_config(_write(tmp_path, dup))
    missing = "models:\n  - {name: a, base: tiny}\n  - {name: b, base: tiny}\n  - {name: c, base: /no/such}\n"
    with pytest.raises(ConfigError, match=r"models\[2\]\.base='/no/such' \(c\): path does not exist"):
        check_paths(load_config(_write(tmp_path, missing + "plan: {k: 1}\n")))


def test_unknown_key_in_file_names_the_file(tmp_path: Path) -> None:
    path = _write(tmp_path, "models:\n  - {name: a, base: tiny}\nplann: {k: 1}\n")
    with pytest.raises(ConfigError, match=rf"{path}: unknown key 'plann'"):
        load_config(path)
    with pytest.raises(ConfigError, match="does not exist"):
        load_config(tmp_path / "absent.yaml")
    bad = _write(tmp_path, "run: [1, 2\n")
    with pytest.raises(ConfigError, match="not valid YAML"):
        load_config(bad)


def test_resolved_config_round_trips_and_hash_ignores_neutral_keys(tmp_path: Path) -> None:
    cfg = load_config()
    saved = tmp_path / "config.yaml"
    saved.write_text(to_yaml(cfg))
    assert load_config(saved) == cfg
    assert config_hash(load_config(overrides=["cluster.backend=slurm", "run.iterations=5"])) == config_hash(
        cfg
    )
    other = load_config(overrides=["plan.alpha=0.3", "rate.kappa=2"])
    assert config_hash(other) != config_hash(cfg)
    assert differing_keys(result_keys(cfg), result_keys(other)) == ["plan.alpha", "rate.kappa"]


def test_multi_rank_training_needs_one_slurm_task_per_rank() -> None:
    with pytest.raises(
        ConfigError, match=r"train.num_ranks=2 needs cluster.backend=slurm .* \(now local, 1 x 1\)"
    ):
        load_config(overrides=["train.num_ranks=2"])
    cfg = load_config(
        overrides=["train.num_ranks=2", "cluster.backend=slurm", "cluster.train.tasks_per_node=2"]
    )
    assert cfg.train.num_ranks == 2
