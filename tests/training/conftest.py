"""Tiny real models shared by the training tests, built once per session (the builds are cached on disk)."""

from __future__ import annotations

from pathlib import Path

import pytest


@pytest.fixture(scope="session")
def tiny_base(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A tiny Llama base (seed 0), shared with tests/engines through the same cached directory."""
    from sparta_hpc.engines.tiny import build_tiny_base

    return build_tiny_base(tmp_path_factory.getbasetemp() / "tiny" / "base", seed=0)


@pytest.fixture(scope="session")
def tiny_adapters(tiny_base: Path, tmp_path_factory: pytest.TempPathFactory) -> list[Path]:
    """Two random LoRA adapters (seeds 1 and 2) on the tiny base."""
    from sparta_hpc.engines.tiny import build_tiny_adapter

    root = tmp_path_factory.getbasetemp() / "tiny"
    return [build_tiny_adapter(tiny_base, root / f"adapter-{seed}", seed=seed) for seed in (1, 2)]
