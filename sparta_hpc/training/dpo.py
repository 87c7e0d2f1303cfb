"""LoRA-DPO of one player on the iteration's preference pairs (TRL DPOTrainer + PEFT), resumable.

``run_dpo_job`` trains the player's adapter (or a fresh LoRA) and publishes the result atomically. Trainer
checkpoints go to ``work_dir`` every ``save_steps``; a rerun with the same ``work_dir`` resumes from the last
complete checkpoint, which is how a preempted Slurm job continues (``adopt_checkpoint`` gives a resubmitted
job, a new attempt with its own ``work_dir``, the newest checkpoint of the earlier attempts). An adapter that
is already published (by an earlier run or another attempt at the same unit) is kept: the job returns without
training, and an attempt that finishes second discards its own.

Multi-rank: with ``train.num_ranks`` > 1 the job runs as that many processes (one per GPU), started by
torchrun or as the tasks of one submitit job (Slurm ``--ntasks``, several nodes if needed), with DeepSpeed
ZeRO from ``train.deepspeed``. Every rank calls ``run_dpo_job``; rank 0 publishes the adapter, gathered from
the ZeRO-3 shards, and the check in ``_publish_adapter`` refuses an empty or all-zero one.
"""

from __future__ import annotations

import importlib.util
import json
import os
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from sparta_hpc.files import canonical_adapter_config, parse_records, require_safetensors_adapter, staging_dir
from sparta_hpc.training.checkpoints import STATS_FILE, last_checkpoint, published_stats
from sparta_hpc.training.data import PROMPT_SIDES, DataStats, check_trl, drop_warning, prepare_pairs

REFERENCES = ("previous_iteration", "base")
DEEPSPEED_DIR = Path(__file__).resolve().parents[2] / "configs" / "deepspeed"
DEEPSPEED_PRESETS = ("zero2", "zero3", "zero3_offload")
"""Names for the shipped ``configs/deepspeed/<name>.json`` (``train.deepspeed``)."""
SCHEDULERS = ("cosine", "linear", "constant", "constant_with_warmup")
_PAIR_FIELDS = ("prompt", "chosen", "rejected")


@dataclass
class TrainConfig:
    """The ``train`` section: LoRA-DPO hyper-parameters shared by every player of an iteration."""

    beta: float = 0.1
    """DPO temperature: how far the policy may move from the reference."""
    learning_rate: float = 1e-6
    """Peak learning rate of the LoRA weights."""
    lr_scheduler: str = "cosine"
    """Learning-rate schedule after warm-up: cosine, linear, constant or constant_with_warmup."""
    warmup_ratio: float = 0.1
    """Fraction of the steps spent warming up, in [0, 1)."""
    weight_decay: float = 1e-5
    """AdamW weight decay."""
    epochs: int = 1
    """Passes over the iteration's preference pairs."""
    batch_size: int = 1
    """Pairs per device per step."""
    grad_accum: int = 1
    """Gradient accumulation steps (effective batch = batch_size * grad_accum * devices)."""
    max_length: int = 512
    """Prompt + response tokens per sequence: a longer response loses its end (its EOS stays), a pair whose
    prompt leaves no room for a response is dropped and counted; done before TRL sees the pairs
    (sparta_hpc/training/data.py)."""
    max_prompt_tokens: int | None = None
    """Cap on the chat-templated prompt's tokens: a longer prompt loses part of its instruction, as
    ``prompt_truncation`` says (the template stays whole); null: no cap. The released code capped at 256."""
    prompt_truncation: str = "left"
    """Where a prompt over ``max_prompt_tokens`` is cut: left drops the instruction's start and keeps its end,
    where the tasks put the answer instruction (as the released trainer did); right drops its end."""
    max_drop_share: float = 0.1
    """Share of a player's pairs that may be dropped (prompt too long) without a warning; above it the job
    warns in its log before training, and the launcher repeats the warning when the train stage's jobs
    return."""
    bf16: bool = True
    """bf16 weights and mixed precision on GPUs; always off on CPU."""
    gradient_checkpointing: bool = False
    """Recompute activations in the backward pass (less memory, ~30% slower)."""
    reference: str = "previous_iteration"
    """DPO reference: the adapter at the start of training, frozen (previous_iteration), or the bare base."""
    save_steps: int = 50
    """Optimizer steps between trainer checkpoints (what a preempted job resumes from)."""
    save_total_limit: int = 2
    """Checkpoints kept in the work dir (>= 2, so one complete checkpoint survives a kill during a save)."""
    deepspeed: str | None = None
    """DeepSpeed ZeRO config: zero2, zero3, zero3_offload (configs/deepspeed/) or the path of a JSON file;
    null trains without DeepSpeed."""
    num_ranks: int = 1
    """Processes of each player's DPO job, one per GPU (data parallel, batch_size pairs each per step)."""
    wandb: bool = False
    """Log every DPO step to Weights & Biases (the optional ``wandb`` extra): one W&B run per player and
    iteration, files under RUN_DIR/wandb; ``WANDB_MODE=offline`` keeps them there for ``wandb sync``."""
    lora_rank: int = 8
    """Rank of a fresh LoRA, used only when the player has no adapter yet."""
    lora_alpha: int = 16
    """Alpha of a fresh LoRA, used only when the player has no adapter yet."""
    lora_targets: list[str] = field(default_factory=lambda: ["q_proj", "k_proj", "v_proj", "o_proj"])
    """Modules of a fresh LoRA, used only when the player has no adapter yet."""

    def __post_init__(self) -> None:
        positive = ("beta", "learning_rate", "epochs", "batch_size", "grad_accum", "max_length", "save_steps")
        for name in (*positive, "lora_rank", "lora_alpha"):
            if getattr(self, name) <= 0:
                raise ValueError(f"train.{name}={getattr(self, name)} must be > 0")
        if not 0 <= self.warmup_ratio < 1:
            raise ValueError(f"train.warmup_ratio={self.warmup_ratio} must be in [0, 1)")
        if self.weight_decay < 0:
            raise ValueError(f"train.weight_decay={self.weight_decay} must be >= 0")
        if self.lr_scheduler not in SCHEDULERS:
            raise ValueError(f"train.lr_scheduler={self.lr_scheduler!r} must be one of {SCHEDULERS}")
        if self.reference not in REFERENCES:
            raise ValueError(f"train.reference={self.reference!r} must be one of {REFERENCES}")
        if self.save_total_limit < 2:
            raise ValueError(f"train.save_total_limit={self.save_total_limit} must be >= 2 to survive a kill")
        if not self.lora_targets:
            raise ValueError("train.lora_targets is empty; name the modules a fresh LoRA adapts")
        if self.deepspeed is not None and not (
            self.deepspeed in DEEPSPEED_PRESETS or self.deepspeed.endswith(".json")
        ):
            raise ValueError(
                f"train.deepspeed={self.deepspeed!r} must be one of {DEEPSPEED_PRESETS} or a .json path"
            )
        if self.num_ranks < 1:
            raise ValueError(f"train.num_ranks={self.num_ranks} must be >= 1")
        if self.max_prompt_tokens is not None and self.max_prompt_tokens < 1:
            raise ValueError(f"train.max_prompt_tokens={self.max_prompt_tokens} must be >= 1 or null")
        if self.prompt_truncation not in PROMPT_SIDES:
            raise ValueError(
                f"train.prompt_truncation={self.prompt_truncation!r} must be one of {PROMPT_SIDES}"
            )
        if not 0 <= self.max_drop_share <= 1:
            raise ValueError(f"train.max_drop_share={self.max_drop_share} must be in [0, 1]")
        if self.wandb and importlib.util.find_spec("wandb") is None:
            raise ValueError("train.wandb=true needs the wandb package: pip install 'sparta-hpc[wandb]'")

    @property
    def deepspeed_config(self) -> str | None:
        """The DeepSpeed JSON path (a preset name resolved to configs/deepspeed/<name>.json)."""
        if self.deepspeed in DEEPSPEED_PRESETS:
            return str(DEEPSPEED_DIR / f"{self.deepspeed}.json")
        return self.deepspeed


def run_dpo_job(
    train: TrainConfig,
    *,
    base: str,
    adapter_in: str | None,
    adapter_out: str,
    pairs_path: str,
    work_dir: str,
    seed: int,
    use_cpu: bool = True,
    base_name: str | None = None,
) -> dict[str, Any]:
    """Train one player with DPO on ``pairs_path`` and write its adapter to ``adapter_out``.

    ``adapter_in=None`` starts from a fresh LoRA (then the reference is the base whatever ``train.reference``
    says, since a fresh LoRA is the base). Returns ``num_pairs`` (in the file), ``data`` (what the data
    policy kept, truncated and dropped: ``DataStats.to_dict``), ``steps``, ``loss`` (last logged),
    ``train_loss`` (mean of this run), ``log`` (TRL's logged metrics of every step: loss, rewards/chosen,
    rewards/rejected, rewards/margins, rewards/accuracies, ...; a resumed job's earlier steps come from the
    checkpoint), ``resumed_from``, ``num_ranks``, ``train_seconds`` (the training loop) and ``seconds`` (the
    whole job). With several ranks, every rank calls this and gets rank 0's stats.
    Raises ValueError when the data policy drops every pair. ``base_name``: the base as the adapter's config
    names it (``base_model_name_or_path``; default: the path it was loaded from).
    """
    work, out = Path(work_dir), Path(adapter_out)
    if out.exists():  # published whole (one rename) by an earlier run of this job or by another attempt
        return published_stats(work)
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    start = time.monotonic()
    init_distributed(train, use_cpu)
    work.mkdir(parents=True, exist_ok=True)
    pairs = read_pairs(Path(pairs_path))
    trainer, data = _build_trainer(train, base, adapter_in, pairs, work, seed, use_cpu)
    warning = drop_warning("", data.to_dict(train.max_drop_share), train.max_drop_share)
    if warning and trainer.is_world_process_zero():
        print(warning, flush=True)  # in the job's log, before the first step
    try:
        checkpoint = last_checkpoint(work)
        if checkpoint is not None and train.deepspeed is None:  # DeepSpeed restores the weights itself
            _load_policy_adapter(trainer.model, checkpoint)
        result = trainer.train(resume_from_checkpoint=str(checkpoint) if checkpoint else None)
        losses = [entry["loss"] for entry in trainer.state.log_history if "loss" in entry]
        stats = {
            "num_pairs": len(pairs),
            "data": data.to_dict(train.max_drop_share),
            "steps": trainer.state.global_step,
            "loss": losses[-1] if losses else None,
            "train_loss": result.training_loss,
            "resumed_from": checkpoint.name if checkpoint else None,
            "num_ranks": trainer.args.world_size,
            "train_seconds": round(result.metrics.get("train_runtime", 0.0), 3),
            "seconds": round(time.monotonic() - start, 3),
            "log": [entry for entry in trainer.state.log_history if "loss" in entry],
        }
        with _gathered_lora(trainer.model):  # collective under ZeRO-3: every rank enters
            if trainer.is_world_process_zero():
                (work / STATS_FILE).write_text(json.dumps(stats, indent=1))  # before the adapter (skip above)
                _publish_adapter(trainer.model, out, base_name)
        trainer.accelerator.wait_for_everyone()
        stats = json.loads((work / STATS_FILE).read_text())  # rank 0's, on every rank
        trainer.accelerator.wait_for_everyone()  # all have read it before any caller cleans work_dir up
    finally:
        if train.deepspeed is not None:
            from transformers.integrations.deepspeed import unset_hf_deepspeed_config

            unset_hf_deepspeed_config()  # else the next model loaded in this process is ZeRO-3 partitioned
    return stats


def init_distributed(train: TrainConfig, use_cpu: bool) -> int:
    """Join this job's ranks (torchrun or submitit tasks) and check their number; returns the world size.

    A multi-task submitit job exports the torch.distributed variables (MASTER_ADDR, RANK, LOCAL_RANK, ...)
    from its Slurm environment; torchrun has set them already. Devices are picked by LOCAL_RANK.
    """
    if "WORLD_SIZE" not in os.environ and os.environ.get("SUBMITIT_EXECUTOR"):
        from submitit.helpers import TorchDistributedEnvironment

        TorchDistributedEnvironment().export(set_cuda_visible_devices=False)
    world_size = int(os.environ.get("WORLD_SIZE", "1"))
    if world_size != train.num_ranks:
        raise ValueError(
            f"train.num_ranks={train.num_ranks} but this job runs {world_size} rank(s); "
            "start it with as many tasks (or torchrun processes) as train.num_ranks"
        )
    if world_size > 1 and use_cpu:
        # Workaround: on CPU, accelerate picks no usable backend for DeepSpeed by itself; start gloo first and
        # let the Trainer use that state (use_configured_state in _dpo_config). Not needed on GPUs (NCCL).
        from accelerate import PartialState

        if train.deepspeed is not None:
            os.environ["ACCELERATE_USE_DEEPSPEED"] = "true"
        PartialState(backend="gloo")
    return world_size


def read_pairs(path: Path) -> list[dict[str, str]]:
    """Preference pairs from a JSONL file; each line needs string fields prompt, chosen and rejected (a bad
    line raises RecordError naming ``path:line``)."""
    pairs = parse_records(path, _pair)
    if not pairs:
        raise ValueError(f"{path} holds no preference pairs: nothing to train on")
    return pairs


def _pair(record: dict[str, Any]) -> dict[str, str]:
    if not all(isinstance(record.get(key), str) for key in _PAIR_FIELDS):
        raise ValueError("a pair needs string fields prompt, chosen and rejected")
    return {key: record[key] for key in _PAIR_FIELDS}


def _build_trainer(
    train: TrainConfig,
    base: str,
    adapter_in: str | None,
    pairs: list[dict[str, str]],
    work: Path,
    seed: int,
    use_cpu: bool,
) -> tuple[Any, DataStats]:
    """The DPOTrainer over the player's policy adapter, with the reference set as configured, on the pairs as
    the data policy prepared them; and its counts (with what TRL's preprocessing dropped, if anything)."""
    import torch
    from datasets import Dataset
    from peft import LoraConfig, PeftModel
    from transformers import AutoModelForCausalLM, AutoTokenizer, set_seed
    from trl import DPOTrainer

    set_seed(seed)
    bf16 = train.bf16 and not use_cpu
    args = _dpo_config(train, work, seed, bf16, use_cpu)  # first: with ZeRO-3 the model loads partitioned
    tokenizer = AutoTokenizer.from_pretrained(base)
    tokenizer.padding_side = "left"
    kept, data = prepare_pairs(
        tokenizer, pairs, max_length=train.max_length, max_prompt_tokens=train.max_prompt_tokens,
        prompt_truncation=train.prompt_truncation,
    )  # fmt: skip
    if not kept:
        raise ValueError(f"every preference pair was dropped: {data.to_dict(train.max_drop_share)}")
    dtype = torch.bfloat16 if bf16 else torch.float32
    model: Any = AutoModelForCausalLM.from_pretrained(base, dtype=dtype, use_safetensors=True)
    peft_config = None
    if adapter_in is None:
        peft_config = LoraConfig(
            r=train.lora_rank, lora_alpha=train.lora_alpha, lora_dropout=0.0,
            target_modules=list(train.lora_targets), task_type="CAUSAL_LM",
        )  # fmt: skip
    else:
        model = PeftModel.from_pretrained(model, require_safetensors_adapter(adapter_in), is_trainable=True)
    trainer = DPOTrainer(
        model=model,
        args=args,
        train_dataset=Dataset.from_list(kept),
        processing_class=tokenizer,
        peft_config=peft_config,
    )
    check_trl(data, trainer.train_dataset, train.max_length)
    # TRL copies an already-trained adapter into a frozen "ref" adapter; without it the reference log-probs
    # are computed with adapters disabled, i.e. by the base (trl/trainer/dpo_trainer.py, DPOTrainer.__init__).
    policy: Any = trainer.model
    if train.reference == "base" and "ref" in policy.peft_config:
        policy.delete_adapter("ref")
        policy.set_adapter("default")
    return trainer, data


def _dpo_config(train: TrainConfig, work: Path, seed: int, bf16: bool, use_cpu: bool) -> Any:
    """TRL's DPOConfig from the train section; no hub, no reporting but W&B if asked, checkpoints every
    save_steps."""
    from trl import DPOConfig

    return DPOConfig(
        output_dir=str(work),
        beta=train.beta,
        learning_rate=train.learning_rate,
        lr_scheduler_type=train.lr_scheduler,
        warmup_steps=train.warmup_ratio,  # transformers 5: a float < 1 is a ratio (warmup_ratio was removed)
        weight_decay=train.weight_decay,
        num_train_epochs=train.epochs,
        per_device_train_batch_size=train.batch_size,
        gradient_accumulation_steps=train.grad_accum,
        max_length=train.max_length,
        bf16=bf16,
        use_cpu=use_cpu,
        gradient_checkpointing=train.gradient_checkpointing,
        deepspeed=train.deepspeed_config,
        accelerator_config={"use_configured_state": train.num_ranks > 1 and use_cpu},
        save_strategy="steps",
        save_steps=train.save_steps,
        save_total_limit=train.save_total_limit,
        logging_steps=1,
        disable_tqdm=True,
        report_to=["wandb"] if train.wandb else [],
        seed=seed,
        data_seed=seed,
        disable_dropout=True,
        push_to_hub=False,
    )


def _load_policy_adapter(model: Any, checkpoint: Path) -> None:
    """Load the trained "default" adapter of a checkpoint into the policy.

    Workaround: when a checkpoint has adapter subfolders (here TRL's "ref"), transformers 5.19
    ``Trainer._load_from_checkpoint`` loads only those (huggingface/transformers#30505), not the "default"
    adapter that PEFT saves at the checkpoint root, so a resumed run would silently restart from adapter_in.
    Remove once the Trainer also loads the root adapter (tests/training/test_dpo.py checks resume).
    """
    from peft import set_peft_model_state_dict
    from safetensors.torch import load_file

    weights = load_file(checkpoint / "adapter_model.safetensors")
    result: Any = set_peft_model_state_dict(model, weights, adapter_name="default")
    if getattr(result, "unexpected_keys", None):
        raise RuntimeError(f"{checkpoint} does not match the policy adapter: {result.unexpected_keys[:3]}")


def _gathered_lora(model: Any) -> Any:
    """Context in which every LoRA weight is whole on every rank (ZeRO-3 shards them); else a no-op."""
    import contextlib

    from transformers.integrations.deepspeed import is_deepspeed_zero3_enabled

    if not is_deepspeed_zero3_enabled():
        return contextlib.nullcontext()
    import deepspeed

    params = [param for name, param in model.named_parameters() if "lora_" in name]
    return deepspeed.zero.GatheredParameters(params, modifier_rank=None)


def _publish_adapter(model: Any, out: Path, base_name: str | None = None) -> None:
    """Save only the policy's LoRA weights to a temporary sibling, check them, then rename to ``out``."""
    from safetensors.torch import load_file

    with staging_dir(out) as tmp:
        model.save_pretrained(tmp, selected_adapters=["default"])
        canonical_adapter_config(tmp, base_name)
        (tmp / "README.md").unlink(missing_ok=True)
        weights = load_file(tmp / "adapter_model.safetensors")
        if not weights or any("lora_" not in key for key in weights):
            raise RuntimeError(
                f"the adapter saved to {tmp} holds non-LoRA or no weights: {sorted(weights)[:3]}"
            )
        if any(tensor.numel() == 0 for tensor in weights.values()):
            raise RuntimeError(f"the adapter saved to {tmp} is empty (ZeRO-3 shards not gathered)")
        if all(not bool(tensor.any()) for tensor in weights.values()):
            raise RuntimeError(f"the adapter saved to {tmp} is all zeros")
