"""The train job: LoRA-DPO of one player on the iteration's shared preference pairs."""

from __future__ import annotations

import shutil
from typing import Any

from sparta_hpc.files import read_json, write_json
from sparta_hpc.jobs.common import has_cuda, open_run, players_at, set_threads, stable_seed


def train_player(run_root: str, t: int, player: str) -> dict[str, Any]:
    """LoRA-DPO one player on the iteration's shared preference pairs; resumes from its last checkpoint."""
    run, cfg = open_run(run_root)
    out = run.adapter(t, player)
    if out.exists() and run.train_stats(t, player).exists():
        return read_json(run.train_stats(t, player))
    set_threads(cfg, "train")
    from sparta_hpc.training.dpo import run_dpo_job

    spec = players_at(run, t)[player]
    stats = run_dpo_job(
        cfg.train,
        base=str(spec["base"]),
        adapter_in=spec["adapter"],
        adapter_out=str(out),
        pairs_path=str(run.preferences(t)),
        work_dir=str(run.train_work(t, player)),
        seed=stable_seed(cfg.run.seed, t, "train", player),
        use_cpu=not has_cuda(),
    )
    write_json(run.train_stats(t, player), stats)
    shutil.rmtree(run.train_work(t, player), ignore_errors=True)
    return stats
