"""Chunks sized for the engine: vLLM batches a whole chunk, so it gets at least ``engine.vllm_min_chunk``."""

from __future__ import annotations

from sparta_hpc.config import load_config
from sparta_hpc.jobs.common import engine_chunk


def test_vllm_chunks_are_raised_to_the_minimum_and_hf_chunks_kept() -> None:
    hf = load_config(overrides=["generate.chunk_size=16"])
    assert engine_chunk(hf, hf.generate.chunk_size) == 16
    vllm = load_config(overrides=["engine.kind=vllm", "generate.chunk_size=16", "judge.chunk_size=2048"])
    assert engine_chunk(vllm, vllm.generate.chunk_size) == 512
    assert engine_chunk(vllm, vllm.judge.chunk_size) == 2048
    small = load_config(overrides=["engine.kind=vllm", "engine.vllm_min_chunk=100"])
    assert engine_chunk(small, 64) == 100
