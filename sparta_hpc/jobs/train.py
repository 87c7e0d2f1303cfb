"""The train job: LoRA-DPO of one player on the iteration's shared preference pairs."""

from __future__ import annotations

import shutil
from typing import Any

from sparta_hpc.files import read_json, write_json
from sparta_hpc.jobs.common import attempt_id, has_cuda, open_run, players_at, set_threads, stable_seed


def train_player(run_root: str, t: int, player: str) -> dict[str, Any]:
    """LoRA-DPO one player on the iteration's shared preference pairs; resumes from its last checkpoint."""
    run, cfg = open_run(run_root)
    out = run.adapter(t, player)
    if out.exists() and run.train_stats(t, player).exists():
        return read_json(run.train_stats(t, player))
    set_threads(cfg, "train")
    from sparta_hpc.training.checkpoints import adopt_checkpoint
    from sparta_hpc.training.dpo import run_dpo_job

    work = run.train_attempt(t, player, attempt_id())
    adopt_checkpoint(work, run.train_work(t, player))
    spec = players_at(run, t)[player]
    stats = run_dpo_job(
        cfg.train,
        base=str(spec["base"]),
        adapter_in=spec["adapter"],
        adapter_out=str(out),
        pairs_path=str(run.preferences(t)),
        work_dir=str(work),
        seed=stable_seed(cfg.run.seed, t, "train", player),
        use_cpu=not has_cuda(),
    )
    write_json(run.train_stats(t, player), stats)
    shutil.rmtree(work, ignore_errors=True)  # other attempts' folders: removed by the launcher (train stage)
    return stats
