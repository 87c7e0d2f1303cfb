"""The plan stage's model setup job: resolves every base to a model directory (a hub id from the local cache,
a GGUF file converted once into the model cache) and builds the tiny base and adapters a config asks for."""

from __future__ import annotations

from sparta_hpc.config import SpartaConfig
from sparta_hpc.engines.base import TINY
from sparta_hpc.engines.sources import resolve_base
from sparta_hpc.jobs.common import open_run, stable_seed
from sparta_hpc.store.models import stored
from sparta_hpc.store.rundir import RunDir


def prepare_models(run_root: str) -> dict[str, dict[str, str | None]]:
    """Resolve every base (``engines/sources.py``), build the tiny base and tiny adapters the config asks for;
    return each player's base directory and adapter."""
    run, cfg = open_run(run_root)
    from sparta_hpc.engines.tiny import build_tiny_adapter, build_tiny_base

    players: dict[str, dict[str, str | None]] = {}
    for i, m in enumerate(cfg.models):
        base = (
            str(build_tiny_base(run.tiny_base, seed=cfg.tiny.seed))
            if m.base == TINY
            else resolve_base(m.base)
        )
        adapter = m.adapter
        if adapter == TINY:
            seed = stable_seed(cfg.tiny.seed, "adapter", i, m.name)
            out = run.initial_adapter(m.name)
            rank, name = cfg.tiny.lora_rank, stored(run, base)  # relative inside the run: relocatable
            adapter = str(build_tiny_adapter(base, out, seed=seed, rank=rank, base_name=name))
        players[m.name] = {"base": base, "adapter": adapter}
    return players


def eval_judge_model(run: RunDir, cfg: SpartaConfig) -> dict[str, str | None]:
    """Base and adapter of ``eval.judge_model``, building the tiny ones it asks for."""
    judge = cfg.eval.judge_model
    assert judge is not None  # config: required for alpaca
    from sparta_hpc.engines.tiny import build_tiny_adapter, build_tiny_base

    base = (
        str(build_tiny_base(run.tiny_base, seed=cfg.tiny.seed))
        if judge.base == TINY
        else resolve_base(judge.base)
    )
    adapter = judge.adapter
    if adapter == TINY:
        seed = stable_seed(cfg.tiny.seed, "eval-judge", judge.name)
        out, name = run.eval_judge_adapter(judge.name), stored(run, base)
        adapter = str(build_tiny_adapter(base, out, seed=seed, rank=cfg.tiny.lora_rank, base_name=name))
    return {"base": base, "adapter": adapter}
