"""LoRA-DPO on the tiny model: weights change, load back, repeat exactly, resume exactly."""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

import pytest

from sparta_hpc.training.dpo import TrainConfig, last_checkpoint, read_pairs, run_dpo_job

FAST = {"learning_rate": 1e-3, "save_steps": 3}  # 8 pairs -> checkpoints 3, 6, 8 (the last two kept)


def _weights(adapter: Path) -> dict[str, Any]:
    from safetensors.torch import load_file

    return load_file(adapter / "adapter_model.safetensors")


def _same(a: dict[str, Any], b: dict[str, Any]) -> bool:
    return a.keys() == b.keys() and all(a[k].equal(b[k]) for k in a)


@pytest.fixture(scope="module")
def pairs(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("pairs") / "pairs.jsonl"
    rows = [
        {"prompt": f"What is {i} + 1?", "chosen": f"It is {i + 1}.", "rejected": "No idea.", "match_id": i}
        for i in range(8)
    ]
    path.write_text("".join(json.dumps(row) + "\n" for row in rows))
    return path


def _train(tmp: Path, name: str, base: Path, adapter: Path | None, pairs: Path, **cfg: Any) -> dict[str, Any]:
    return run_dpo_job(
        TrainConfig(**{**FAST, **cfg}),
        base=str(base),
        adapter_in=str(adapter) if adapter else None,
        adapter_out=str(tmp / name / "adapter"),
        pairs_path=str(pairs),
        work_dir=str(tmp / name / "work"),
        seed=7,
    )


@pytest.fixture(scope="module")
def trained(
    tmp_path_factory: pytest.TempPathFactory, tiny_base: Path, tiny_adapters: list[Path], pairs: Path
) -> tuple[Path, dict[str, Any]]:
    """One reference run from the first tiny adapter (reference: previous iteration)."""
    root = tmp_path_factory.mktemp("dpo")
    stats = _train(root, "run", tiny_base, tiny_adapters[0], pairs)
    return root / "run", stats


def test_train_config_names_the_bad_key() -> None:
    with pytest.raises(ValueError, match=r"train\.beta=0 must be > 0"):
        TrainConfig(beta=0)
    with pytest.raises(ValueError, match=r"train\.reference='frozen'"):
        TrainConfig(reference="frozen")
    with pytest.raises(ValueError, match=r"train\.warmup_ratio=1\.0"):
        TrainConfig(warmup_ratio=1.0)


def test_read_pairs_rejects_bad_files(tmp_path: Path) -> None:
    empty, bad = tmp_path / "empty.jsonl", tmp_path / "bad.jsonl"
    empty.write_text("\n")
    bad.write_text(json.dumps({"prompt": "p", "chosen": "c"}) + "\n")
    with pytest.raises(ValueError, match="no preference pairs"):
        read_pairs(empty)
    with pytest.raises(ValueError, match=r"bad\.jsonl:1"):
        read_pairs(bad)


@pytest.mark.slow
def test_adapter_changes_and_loads(
    trained: tuple[Path, dict[str, Any]], tiny_base: Path, tiny_adapters: list[Path]
) -> None:
    import torch
    from peft import PeftModel
    from transformers import AutoModelForCausalLM

    run, stats = trained
    assert stats["num_pairs"] == 8 and stats["steps"] == 8 and stats["resumed_from"] is None
    assert stats["loss"] is not None
    assert [e["step"] for e in stats["log"]] == list(range(1, 9)) and stats["log"][-1]["loss"] == stats[
        "loss"
    ]
    assert all(isinstance(e["rewards/margins"], float) for e in stats["log"])  # TRL's per-step metrics kept
    adapter = run / "adapter"
    assert sorted(p.name for p in adapter.iterdir()) == ["adapter_config.json", "adapter_model.safetensors"]
    before, after = _weights(tiny_adapters[0]), _weights(adapter)
    assert before.keys() == after.keys()
    assert not _same(before, after)
    model = PeftModel.from_pretrained(AutoModelForCausalLM.from_pretrained(tiny_base), adapter)
    assert model(input_ids=torch.tensor([[1, 2, 3]])).logits.shape[-1] == model.config.vocab_size


@pytest.mark.slow
def test_same_seed_gives_identical_weights(
    trained: tuple[Path, dict[str, Any]],
    tmp_path: Path,
    tiny_base: Path,
    tiny_adapters: list[Path],
    pairs: Path,
) -> None:
    _train(tmp_path, "again", tiny_base, tiny_adapters[0], pairs)
    assert _same(_weights(trained[0] / "adapter"), _weights(tmp_path / "again" / "adapter"))


@pytest.mark.slow
def test_resume_from_checkpoint_matches_uninterrupted_run(
    trained: tuple[Path, dict[str, Any]],
    tmp_path: Path,
    tiny_base: Path,
    tiny_adapters: list[Path],
    pairs: Path,
) -> None:
    run, _ = trained
    work = tmp_path / "resumed" / "work"
    shutil.copytree(run / "work" / "checkpoint-6", work / "checkpoint-6")
    shutil.copytree(run / "work" / "checkpoint-8", work / "checkpoint-8")
    (work / "checkpoint-8" / "trainer_state.json").unlink()  # killed while saving: not a checkpoint
    assert last_checkpoint(work) == work / "checkpoint-6"
    stats = _train(tmp_path, "resumed", tiny_base, tiny_adapters[0], pairs)
    assert stats["resumed_from"] == "checkpoint-6" and stats["steps"] == 8
    assert [e["step"] for e in stats["log"]] == list(range(1, 9))  # steps 1-6 come from the checkpoint
    assert _same(_weights(run / "adapter"), _weights(tmp_path / "resumed" / "adapter"))
    # Published: a rerun returns the stats without training.
    assert _train(tmp_path, "resumed", tiny_base, tiny_adapters[0], pairs) == stats


@pytest.mark.slow
def test_base_reference_and_fresh_lora(
    trained: tuple[Path, dict[str, Any]],
    tmp_path: Path,
    tiny_base: Path,
    tiny_adapters: list[Path],
    pairs: Path,
) -> None:
    _train(tmp_path, "base-ref", tiny_base, tiny_adapters[0], pairs, reference="base")
    assert not _same(_weights(trained[0] / "adapter"), _weights(tmp_path / "base-ref" / "adapter"))
    _train(tmp_path, "fresh", tiny_base, None, pairs, lora_rank=4, lora_targets=["q_proj", "v_proj"])
    fresh = _weights(tmp_path / "fresh" / "adapter")
    assert len(fresh) == 2 * 2 * 2 and all(t.shape[0] == 4 for k, t in fresh.items() if "lora_A" in k)
    assert all(t.abs().sum() > 0 for k, t in fresh.items() if "lora_B" in k)  # trained away from B = 0


@pytest.mark.slow
def test_wandb_offline_run_holds_the_dpo_metrics(
    tmp_path: Path, tiny_base: Path, tiny_adapters: list[Path], pairs: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import wandb

    for key, value in {"WANDB_MODE": "offline", "WANDB_DIR": str(tmp_path), "WANDB_SILENT": "true"}.items():
        monkeypatch.setenv(key, value)
    monkeypatch.setenv("WANDB_NAME", "iter_000-tiny-a")
    try:
        stats = _train(tmp_path, "logged", tiny_base, tiny_adapters[0], pairs, wandb=True)
    finally:
        wandb.finish()
        wandb.teardown()  # the W&B service writes the run file; teardown waits for it
    runs = list((tmp_path / "wandb").glob("offline-run-*/run-*.wandb"))
    assert len(runs) == 1, list(tmp_path.rglob("*"))
    data = runs[0].read_bytes()
    assert b"iter_000-tiny-a" in data
    for metric in ("train/loss", "train/rewards/margins", "train/rewards/accuracies"):
        assert metric.encode() in data, metric
    last = stats["log"][-1]  # W&B holds the values the run directory keeps (as JSON)
    assert json.dumps(last["loss"]).encode() in data and json.dumps(last["rewards/margins"]).encode() in data
