"""Building a pool of experts: one LoRA adapter per expert, supervised fine-tuned (TRL SFT + PEFT) from one
shared base on that expert's own data, as the paper's experts were made. ``sparta-hpc build-pool``.

An expert's data is a JSONL file whose lines are ``{"prompt": str, "completion": str}`` or ``{"messages":
[{"role": ..., "content": ...}, ...]}``; the loss is on the completion (the assistant turns) only. Adapters
are published atomically; a finished expert is skipped and an interrupted one resumes from its last trainer
checkpoint, so running the same command again finishes the pool.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from omegaconf import MISSING

from sparta_hpc.errors import ConfigError, TaskDataError, require_positive
from sparta_hpc.files import (
    BadLine,
    canonical_adapter_config,
    jsonl_lines,
    staging_dir,
    write_json,
    write_jsonl,
)
from sparta_hpc.training.checkpoints import last_checkpoint

ROLES = frozenset(("system", "user", "assistant"))
METRICS_FILE = "sft_metrics.jsonl"
"""Per-step training metrics (loss, learning rate, token accuracy) beside each adapter."""
RUN_FILE = "sft_run.json"
"""Examples, steps and the checkpoint the training resumed from (null: from the start)."""


@dataclass
class ExpertConfig:
    """One expert of the pool: its name (a player name) and its SFT data."""

    name: str = MISSING
    """Player name (letters, digits, ``-`` and ``_``); the adapter is written to ``out/<name>``."""
    data: str = MISSING
    """JSONL file of prompt/completion pairs or chat ``messages``."""


@dataclass
class PoolConfig:
    """``sparta-hpc build-pool``: LoRA experts SFT-trained from one base, one dataset each."""

    base: str = MISSING
    """The shared base: a model directory (or any base a run accepts)."""
    out: str = MISSING
    """Folder of the pool: one adapter folder per expert and ``pool.yaml`` (the ``models`` list of a run)."""
    experts: list[ExpertConfig] = field(default_factory=list)
    """The experts, each ``{name, data}``."""
    lora_rank: int = 8
    """LoRA rank of every expert."""
    lora_alpha: int = 16
    """LoRA alpha."""
    lora_targets: list[str] = field(default_factory=lambda: ["q_proj", "k_proj", "v_proj", "o_proj"])
    """Modules that get a LoRA (the same as ``train.lora_targets`` of a run keeps DPO on the same modules)."""
    learning_rate: float = 2e-4
    """AdamW learning rate."""
    epochs: float = 1.0
    """Passes over each expert's data."""
    batch_size: int = 4
    """Examples per step."""
    grad_accum: int = 1
    """Gradient accumulation steps."""
    max_length: int = 512
    """Longest example in tokens; longer ones are truncated (TRL)."""
    save_steps: int = 50
    """Trainer checkpoint every this many steps (what an interrupted expert resumes from)."""
    bf16: bool = True
    """bfloat16 on a GPU (ignored on the CPU: float32)."""
    seed: int = 0
    """Seed of LoRA initialisation and data order."""

    def __post_init__(self) -> None:
        require_positive(
            "pool", self, ("lora_rank", "lora_alpha", "batch_size", "grad_accum", "max_length", "save_steps")
        )
        if self.learning_rate <= 0 or self.epochs <= 0:
            raise ConfigError("learning_rate and epochs must be > 0")
        if not self.lora_targets:
            raise ConfigError("lora_targets must name at least one module")


def config_problems(cfg: PoolConfig) -> list[str]:
    """Everything wrong with the experts, all at once: names, missing or unreadable data, bad lines."""
    problems: list[str] = []
    if not cfg.experts:
        problems.append("experts is empty: give at least one {name, data}")
    seen: set[str] = set()
    for i, expert in enumerate(cfg.experts):
        key = f"experts[{i}]"
        if not expert.name or not all(c.isalnum() or c in "-_" for c in expert.name):
            problems.append(f"{key}.name={expert.name!r}: use letters, digits, '-' and '_'")
        elif expert.name in seen:
            problems.append(f"{key}.name={expert.name!r}: two experts have this name")
        seen.add(expert.name)
        try:
            read_examples(Path(expert.data))
        except (OSError, TaskDataError) as e:
            problems.append(f"{key}.data: {e}")
    return problems


def read_examples(path: Path) -> list[dict[str, Any]]:
    """The SFT examples of one expert as TRL conversational records; a bad line raises naming path:line."""
    if not path.is_file():
        raise TaskDataError(f"{path}: file does not exist")
    examples = []
    for lineno, value in jsonl_lines(path, keep_bad=True, error=TaskDataError):
        where = f"{path}:{lineno}"
        if isinstance(value, BadLine):
            raise TaskDataError(f"{where}: {value.error}")
        examples.append(_example(value, where))
    if not examples:
        raise TaskDataError(f"{path}: no examples")
    return examples


def _example(value: Any, where: str) -> dict[str, Any]:
    if not isinstance(value, dict):
        raise TaskDataError(f"{where}: expected a JSON object")
    if "messages" in value:
        messages = value["messages"]
        ok = (
            isinstance(messages, list)
            and messages
            and all(
                isinstance(m, dict) and m.get("role") in ROLES and isinstance(m.get("content"), str)
                for m in messages
            )
        )
        if not ok or messages[-1]["role"] != "assistant":
            raise TaskDataError(
                f"{where}: 'messages' must be a list of {{role, content}} (roles system/user/assistant) "
                "ending with an assistant turn"
            )
        return {"prompt": messages[:-1], "completion": messages[-1:]}
    prompt, completion = value.get("prompt"), value.get("completion")
    if not isinstance(prompt, str) or not isinstance(completion, str) or not prompt or not completion:
        raise TaskDataError(
            f"{where}: expected non-empty string fields 'prompt' and 'completion' (or 'messages')"
        )
    return {
        "prompt": [{"role": "user", "content": prompt}],
        "completion": [{"role": "assistant", "content": completion}],
    }


def train_expert(cfg: PoolConfig, base: str, expert: ExpertConfig, out: Path, work: Path) -> Path:
    """SFT one LoRA expert on ``base``; publish it at ``out`` (skipped if it exists); resume from ``work``."""
    if (out / "adapter_model.safetensors").is_file():
        return out
    import torch
    from datasets import Dataset
    from peft import LoraConfig
    from transformers import AutoModelForCausalLM, AutoTokenizer, set_seed
    from trl import SFTConfig, SFTTrainer

    set_seed(cfg.seed)
    use_cpu = not torch.cuda.is_available()
    bf16 = cfg.bf16 and not use_cpu
    args = SFTConfig(
        output_dir=str(work),
        learning_rate=cfg.learning_rate,
        num_train_epochs=cfg.epochs,
        per_device_train_batch_size=cfg.batch_size,
        gradient_accumulation_steps=cfg.grad_accum,
        max_length=cfg.max_length,
        bf16=bf16,
        use_cpu=use_cpu,
        gradient_checkpointing=False,
        save_strategy="steps",
        save_steps=cfg.save_steps,
        save_total_limit=2,
        logging_steps=1,
        disable_tqdm=True,
        report_to=[],
        seed=cfg.seed,
        data_seed=cfg.seed,
        push_to_hub=False,
    )
    tokenizer = AutoTokenizer.from_pretrained(base)
    dtype = torch.bfloat16 if bf16 else torch.float32
    model = AutoModelForCausalLM.from_pretrained(base, dtype=dtype, use_safetensors=True)
    lora = LoraConfig(
        r=cfg.lora_rank, lora_alpha=cfg.lora_alpha, lora_dropout=0.0,
        target_modules=list(cfg.lora_targets), task_type="CAUSAL_LM",
    )  # fmt: skip
    trainer: Any = SFTTrainer(
        model=model,
        args=args,
        train_dataset=Dataset.from_list(read_examples(Path(expert.data))),
        processing_class=tokenizer,
        peft_config=lora,
    )
    resume = last_checkpoint(work)  # a checkpoint cut short while saving is skipped
    trainer.train(resume_from_checkpoint=str(resume) if resume is not None else None)
    metrics = [row for row in trainer.state.log_history if "loss" in row or "train_loss" in row]
    with staging_dir(out) as tmp:
        trainer.model.save_pretrained(tmp)
        canonical_adapter_config(tmp)
        (tmp / "README.md").unlink(missing_ok=True)
        write_jsonl(tmp / METRICS_FILE, metrics)
        run = {"examples": len(trainer.train_dataset), "steps": trainer.state.global_step}
        write_json(tmp / RUN_FILE, {**run, "resumed_from": resume.name if resume is not None else None})
    return out
