"""Shared fixtures: the Slurm test cluster plugin, and tiny real models built once per session."""

from __future__ import annotations

from pathlib import Path

import pytest

pytest_plugins = ["tests.slurm_cluster"]


@pytest.fixture(scope="session")
def tiny_base(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A tiny Llama base (seed 0)."""
    from sparta_hpc.engines.tiny import build_tiny_base

    return build_tiny_base(tmp_path_factory.getbasetemp() / "tiny" / "base", seed=0)


@pytest.fixture(scope="session")
def tiny_adapters(tiny_base: Path, tmp_path_factory: pytest.TempPathFactory) -> list[Path]:
    """Two random LoRA adapters (seeds 1 and 2) on the tiny base."""
    from sparta_hpc.engines.tiny import build_tiny_adapter

    root = tmp_path_factory.getbasetemp() / "tiny"
    return [build_tiny_adapter(tiny_base, root / f"adapter-{seed}", seed=seed) for seed in (1, 2)]
