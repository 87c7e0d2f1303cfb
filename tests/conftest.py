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


SMOLLM2_GGUF = Path(__file__).resolve().parents[1] / "models" / "SmolLM2-135M-Instruct.Q4_1.gguf"
"""SmolLM2-135M-Instruct, a real instruct model: ``bash scripts/get-smollm2.sh`` puts it there."""
MODEL_CACHE = Path(__file__).resolve().parents[1] / ".cache" / "models"
"""The tests' model cache (git-ignored, kept between sessions): the GGUF is converted once, ever."""


@pytest.fixture(scope="session")
def smollm2() -> Path:
    """SmolLM2-135M-Instruct converted to a safetensors folder (once: reused from ``MODEL_CACHE``). Skips
    without the GGUF file (fails under CI=true, where scripts/test.sh has fetched it); in .venv-vllm, which
    has no gguf package, it needs the conversion the .venv tests made."""
    import importlib.util
    import os

    from sparta_hpc.engines.sources import SOURCE_FILE, convert_gguf, converted_dir

    reason = None
    if not SMOLLM2_GGUF.is_file():
        reason = f"{SMOLLM2_GGUF} is missing: run `bash scripts/get-smollm2.sh`"
    elif not (converted_dir(SMOLLM2_GGUF, MODEL_CACHE) / SOURCE_FILE).is_file() and (
        importlib.util.find_spec("gguf") is None
    ):
        reason = "no gguf package to convert SmolLM2 here: run the .venv tests first (scripts/test.sh does)"
    if reason is not None:
        if os.environ.get("CI", "").lower() == "true":
            pytest.fail(f"CI=true: {reason}")
        pytest.skip(reason)
    return convert_gguf(SMOLLM2_GGUF, MODEL_CACHE)
