"""The build-pool job: SFT one expert of a pool (``training/sft.py``) into ``out/<name>``."""

from __future__ import annotations

from pathlib import Path

from sparta_hpc.engines.sources import resolve_base
from sparta_hpc.training.sft import PoolConfig, train_expert

WORK_DIR = ".work"
"""Trainer checkpoints of unfinished experts, under the pool's folder (removed when the pool is complete)."""


def build_expert(cfg: PoolConfig, index: int) -> str:
    """Train expert ``index`` of ``cfg`` (skipped when its adapter exists); return the adapter folder."""
    expert = cfg.experts[index]
    out = Path(cfg.out)
    base = resolve_base(cfg.base)  # a GGUF file is converted once, a hub id read from the local cache
    return str(train_expert(cfg, base, expert, out / expert.name, out / WORK_DIR / expert.name))
