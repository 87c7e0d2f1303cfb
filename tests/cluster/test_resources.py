"""The cluster section: per-stage resources, presets, and errors that name every bad key at once."""

from __future__ import annotations

from pathlib import Path

import pytest

from sparta_hpc.cluster.resources import StageResources, preset_names
from sparta_hpc.config import DEFAULT_CONFIG, config_hash, load_config, to_yaml
from sparta_hpc.errors import ConfigError


def test_presets_are_chosen_by_option_or_override_token() -> None:
    assert {"a100x16", "local-slurm"} <= set(preset_names())
    by_option = load_config(overrides=["cluster.poll_interval_s=5"], preset="local-slurm")
    by_token = load_config(overrides=["cluster=local-slurm", "cluster.poll_interval_s=5"])
    assert by_option == by_token
    assert by_option.cluster.backend == "slurm" and by_option.cluster.poll_interval_s == 5
    assert by_option.cluster.train == StageResources(
        partition="debug", cpus_per_task=1, mem_gb=2, timeout_min=20
    )
    assert config_hash(by_option) == config_hash(load_config()), "a preset must never change results"


def test_preset_merges_after_the_file_and_before_overrides(tmp_path: Path) -> None:
    config = tmp_path / "c.yaml"
    config.write_text(DEFAULT_CONFIG.read_text() + "  poll_interval_s: 7\n")
    assert load_config(config).cluster.poll_interval_s == 7
    assert load_config(config, preset="a100x16").cluster.poll_interval_s == 60
    assert load_config(config, ["cluster.poll_interval_s=3"], preset="a100x16").cluster.poll_interval_s == 3


def test_bad_presets_are_refused(tmp_path: Path) -> None:
    with pytest.raises(
        ConfigError, match=r"cluster preset 'nope' not found; available: a100x16, local-slurm"
    ):
        load_config(overrides=["cluster=nope"])
    with pytest.raises(ConfigError, match="two cluster presets given"):
        load_config(overrides=["cluster=a100x16"], preset="local-slurm")
    other = tmp_path / "mine.yaml"
    other.write_text("cluster: {backend: slurm}\nplan: {alpha: 0.1}\n")
    with pytest.raises(ConfigError, match="a cluster preset sets only the cluster section, not plan"):
        load_config(preset=str(other))


def test_every_bad_resource_key_and_value_is_named_in_one_error() -> None:
    with pytest.raises(ConfigError) as unknown:
        load_config(overrides=["cluster.train.memgb=1", "cluster.judge.gpus=2", "cluster.train.partition=a"])
    assert "cluster.judge.gpus" in str(unknown.value) and "cluster.train.memgb" in str(unknown.value)
    assert "Valid keys of a stage: partition, account" in str(unknown.value)
    bad = ["cluster.train.mem_gb=-1", "cluster.judge.nodes=0", "cluster.evaluate.sbatch={time: 5}"]
    with pytest.raises(ConfigError) as values:
        load_config(overrides=[*bad, "cluster.poll_interval_s=0"])
    for text in (
        "cluster.judge.nodes=0 must be >= 1",
        "cluster.train.mem_gb=-1.0 must be > 0",
        "cluster.evaluate.sbatch.time is set by timeout_min",
        "cluster.poll_interval_s=0.0 must be > 0",
    ):
        assert text in str(values.value)


def test_resolved_config_with_resources_round_trips(tmp_path: Path) -> None:
    cfg = load_config(overrides=["cluster.train.sbatch={mail-type: END}", "cluster.generate.setup=[echo hi]"])
    saved = tmp_path / "config.yaml"
    saved.write_text(to_yaml(cfg))
    assert load_config(saved) == cfg
