"""Multi-rank LoRA-DPO with DeepSpeed ZeRO on the CPU (gloo), for real: torchrun and a 2-task Slurm job.

The 2-rank runs take one pair per rank and step; the reference is one process taking both pairs per step on
the same data and seed, so the adapters must agree up to float summation order.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from sparta_hpc.training.dpo import DEEPSPEED_PRESETS, TrainConfig, run_dpo_job
from tests.slurm_cluster import SlurmCluster

WORKER = Path(__file__).with_name("dpo_worker.py")
TRAIN = {"learning_rate": 1e-3, "max_length": 64, "save_steps": 2, "bf16": False}
TOLERANCE = 1e-5
"""Largest difference allowed between a 2-rank and the 1-process adapter weights (values ~0.1)."""


def _weights(adapter: Path) -> dict[str, Any]:
    from safetensors.torch import load_file

    return load_file(adapter / "adapter_model.safetensors")


def _max_difference(a: dict[str, Any], b: dict[str, Any]) -> float:
    assert a.keys() == b.keys()
    return max(float((a[k].float() - b[k].float()).abs().max()) for k in a)


@pytest.fixture(scope="module")
def pairs(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("ds-pairs") / "pairs.jsonl"
    rows = [
        {"prompt": f"What is {i} + 2?", "chosen": f"It is {i + 2}.", "rejected": "I do not know that."}
        for i in range(8)
    ]
    path.write_text("".join(json.dumps(row) + "\n" for row in rows))
    return path


def _job(root: Path, base: Path, adapter: Path, pairs: Path) -> dict[str, Any]:
    return {
        "base": str(base),
        "adapter_in": str(adapter),
        "adapter_out": str(root / "adapter"),
        "pairs_path": str(pairs),
        "work_dir": str(root / "work"),
        "seed": 11,
    }


@pytest.fixture(scope="module")
def reference(
    tmp_path_factory: pytest.TempPathFactory, tiny_base: Path, tiny_adapters: list[Path], pairs: Path
) -> Path:
    """The 1-process run: both pairs of a step in one batch of 2."""
    root = tmp_path_factory.mktemp("ds-reference")
    stats = run_dpo_job(TrainConfig(**TRAIN, batch_size=2), **_job(root, tiny_base, tiny_adapters[0], pairs))
    assert stats["steps"] == 4 and stats["num_ranks"] == 1
    return root / "adapter"


def _torchrun(root: Path, job: dict[str, Any], train: dict[str, Any]) -> subprocess.CompletedProcess[str]:
    spec = json.dumps({**job, "train": train})
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "OMP_NUM_THREADS": "1", "TOKENIZERS_PARALLELISM": "false"}
    command = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2"]
    return subprocess.run(
        [*command, str(WORKER), spec], capture_output=True, text=True, env=env, timeout=600, check=False
    )


def _two_rank_run(root: Path, stage: str, base: Path, adapter: Path, pairs: Path) -> dict[str, Any]:
    """Train on 2 ranks under torchrun with ZeRO ``stage``; returns the job's stats."""
    job = _job(root, base, adapter, pairs)
    proc = _torchrun(root, job, {**TRAIN, "deepspeed": stage, "num_ranks": 2})
    assert proc.returncode == 0, proc.stderr[-4000:]
    return json.loads((root / "work" / "dpo_stats.json").read_text())


def _check_against_reference(adapter: Path, reference: Path, initial: Path, what: str) -> None:
    from sparta_hpc.engines.vllm import check_adapter

    ours = _weights(adapter)
    assert _max_difference(ours, _weights(initial)) > 1e-3  # trained
    difference = _max_difference(ours, _weights(reference))
    print(f"{what} vs 1 process: max |difference| = {difference:.2e}")
    assert difference < TOLERANCE
    assert check_adapter(adapter) == 8  # complete, LoRA only: loads into vLLM as is


@pytest.fixture(scope="module")
def zero3_run(
    tmp_path_factory: pytest.TempPathFactory, tiny_base: Path, tiny_adapters: list[Path], pairs: Path
) -> Path:
    root = tmp_path_factory.mktemp("zero3")
    stats = _two_rank_run(root, "zero3", tiny_base, tiny_adapters[0], pairs)
    assert stats["steps"] == 4 and stats["num_ranks"] == 2 and stats["resumed_from"] is None
    return root


@pytest.mark.slow
def test_zero2_two_ranks_match_one_process(
    reference: Path, tmp_path: Path, tiny_base: Path, tiny_adapters: list[Path], pairs: Path
) -> None:
    stats = _two_rank_run(tmp_path, "zero2", tiny_base, tiny_adapters[0], pairs)
    assert stats["steps"] == 4 and stats["num_ranks"] == 2
    _check_against_reference(tmp_path / "adapter", reference, tiny_adapters[0], "ZeRO-2, 2 ranks")


@pytest.mark.slow
def test_zero3_two_ranks_match_one_process(
    zero3_run: Path, reference: Path, tiny_adapters: list[Path]
) -> None:
    _check_against_reference(zero3_run / "adapter", reference, tiny_adapters[0], "ZeRO-3, 2 ranks")


@pytest.mark.slow
def test_zero3_resumes_from_its_checkpoint(
    zero3_run: Path, tmp_path: Path, tiny_base: Path, tiny_adapters: list[Path], pairs: Path
) -> None:
    """A preempted job (killed after the checkpoint of step 2) continues to the same adapter."""
    shutil.copytree(zero3_run / "work" / "checkpoint-2", tmp_path / "work" / "checkpoint-2")
    stats = _two_rank_run(tmp_path, "zero3", tiny_base, tiny_adapters[0], pairs)
    assert stats["resumed_from"] == "checkpoint-2" and stats["steps"] == 4
    assert _max_difference(_weights(tmp_path / "adapter"), _weights(zero3_run / "adapter")) < 1e-7


@pytest.mark.slow
def test_rank_count_must_match_the_config(
    tmp_path: Path, tiny_base: Path, tiny_adapters: list[Path], pairs: Path
) -> None:
    job = _job(tmp_path, tiny_base, tiny_adapters[0], pairs)
    with pytest.raises(ValueError, match=r"train\.num_ranks=2 but this job runs 1 rank"):
        run_dpo_job(TrainConfig(**TRAIN, num_ranks=2), **job)


@pytest.mark.slurm
@pytest.mark.slow
@pytest.mark.timeout(600)
@pytest.mark.parametrize("stage", ["zero2", "zero3"])
def test_two_task_slurm_job_matches_one_process(
    stage: str,
    slurm_cluster: SlurmCluster,
    reference: Path,
    tmp_path: Path,
    tiny_base: Path,
    tiny_adapters: list[Path],
    pairs: Path,
) -> None:
    import submitit

    executor = submitit.AutoExecutor(folder=tmp_path / "submitit", cluster="slurm")
    executor.update_parameters(
        nodes=1, tasks_per_node=2, cpus_per_task=1, mem_gb=6, timeout_min=10, name="train",
        slurm_partition=slurm_cluster.default_partition,
    )  # fmt: skip
    train = TrainConfig(**TRAIN, deepspeed=stage, num_ranks=2)
    job = executor.submit(run_dpo_job, train, **_job(tmp_path / "run", tiny_base, tiny_adapters[0], pairs))
    rank0, rank1 = job.results()  # every task runs run_dpo_job; both return the job's stats
    assert rank0 == rank1 and rank0["steps"] == 4 and rank0["num_ranks"] == 2
    _check_against_reference(tmp_path / "run" / "adapter", reference, tiny_adapters[0], f"{stage}, Slurm")


@pytest.mark.parametrize("preset", DEEPSPEED_PRESETS)
def test_shipped_deepspeed_configs_validate(preset: str, tmp_path: Path, tiny_base: Path) -> None:
    """Each config resolves its "auto" fields against the Trainer's and passes DeepSpeed's own parser."""
    from types import SimpleNamespace

    from deepspeed.runtime.config import DeepSpeedConfig
    from transformers import AutoConfig, TrainingArguments
    from transformers.integrations.deepspeed import HfTrainerDeepSpeedConfig

    path = TrainConfig(deepspeed=preset).deepspeed_config
    assert path is not None and Path(path).is_file()
    config = json.loads(Path(path).read_text())
    args = TrainingArguments(output_dir=str(tmp_path), use_cpu=True, report_to=[])
    hf_config = HfTrainerDeepSpeedConfig(config)
    hf_config.trainer_config_process(args)
    model = SimpleNamespace(config=AutoConfig.from_pretrained(tiny_base))
    hf_config.trainer_config_finalize(args, model, num_training_steps=10)
    parsed = DeepSpeedConfig(hf_config.config)
    assert parsed.zero_optimization_stage == (2 if preset == "zero2" else 3)
    if preset != "zero2":  # else ZeRO-3 saves empty adapters (platform notes)
        assert parsed.zero_config.gather_16bit_weights_on_model_save


@pytest.mark.parametrize("defect", ["all zeros", "empty"])
def test_an_empty_or_zero_adapter_is_never_published(
    defect: str, tmp_path: Path, tiny_base: Path, tiny_adapters: list[Path]
) -> None:
    """What ZeRO-3 saves when the shards are not gathered (empty) or a broken run (zeros) is refused."""
    import torch
    from peft import PeftModel
    from transformers import AutoModelForCausalLM

    from sparta_hpc.training.dpo import _publish_adapter

    model = PeftModel.from_pretrained(AutoModelForCausalLM.from_pretrained(tiny_base), tiny_adapters[0])
    for name, param in model.named_parameters():
        if "lora_" in name:
            param.data = torch.zeros_like(param) if defect == "all zeros" else torch.empty(0)
    with pytest.raises(RuntimeError, match=defect):
        _publish_adapter(model, tmp_path / "adapter")
    assert not (tmp_path / "adapter").exists()
