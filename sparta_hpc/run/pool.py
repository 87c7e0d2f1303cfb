"""``sparta-hpc build-pool CONFIG [key=value ...]``: SFT one LoRA expert per dataset from one base, then
write ``OUT/pool.yaml``, the ``models`` list a run config takes. Runs in this process (on a cluster, inside
an allocation: ``srun --gpus-per-node=1 sparta-hpc build-pool ...``); running it again after an interruption
skips finished experts and resumes the unfinished one from its last checkpoint."""

from __future__ import annotations

import argparse
import shutil
import time
from pathlib import Path

import yaml

from sparta_hpc.config.pool import load_pool_config
from sparta_hpc.files import atomic_write_text, read_jsonl
from sparta_hpc.jobs.pool import WORK_DIR, build_expert

POOL_FILE = "pool.yaml"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("config", help="YAML file: base, out, experts: [{name, data}], training settings")
    parser.add_argument("overrides", nargs="*", metavar="key=value", help="e.g. lora_rank=16 epochs=2")


def _as_given(base: str) -> str:
    """The base as a run config should name it: a local path made absolute, a hub id as it is."""
    return str(Path(base).resolve()) if Path(base).exists() else base


def main(args: argparse.Namespace) -> int:
    cfg = load_pool_config(args.config, list(args.overrides))
    out = Path(cfg.out)
    for i, expert in enumerate(cfg.experts):
        start = time.monotonic()
        adapter = Path(build_expert(cfg, i))
        losses = [row["loss"] for row in read_jsonl(adapter / "sft_metrics.jsonl") if "loss" in row]
        last = f"final loss {losses[-1]:.4f}, " if losses else ""
        print(f"{expert.name}: {adapter} ({last}{time.monotonic() - start:.1f} s)", flush=True)
    models = [
        {"name": e.name, "base": _as_given(cfg.base), "adapter": str((out / e.name).resolve())}
        for e in cfg.experts
    ]
    atomic_write_text(out / POOL_FILE, yaml.safe_dump({"models": models}, sort_keys=False))
    shutil.rmtree(out / WORK_DIR, ignore_errors=True)
    print(f"pool: {out / POOL_FILE} (use its models list in a run config)")
    return 0
