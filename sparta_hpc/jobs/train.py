"""The train job: LoRA-DPO of one player on the iteration's shared preference pairs."""

from __future__ import annotations

import os
import shutil
from typing import Any

from sparta_hpc.files import read_json, write_json
from sparta_hpc.jobs.common import attempt_id, has_cuda, open_run, players_at, set_threads, stable_seed
from sparta_hpc.store.models import stored
from sparta_hpc.store.progress import UnitProgress
from sparta_hpc.store.rundir import RunDir
from sparta_hpc.training.data import data_line, drop_warning, sum_data


def train_player(run_root: str, t: int, player: str) -> dict[str, Any]:
    """LoRA-DPO one player on the iteration's shared preference pairs (its own ones in
    ``run.mode=self_rewarding``); resumes from its last checkpoint."""
    run, cfg = open_run(run_root)
    out = run.adapter(t, player)
    if out.exists() and run.train_stats(t, player).exists():
        return read_json(run.train_stats(t, player))
    set_threads(cfg, "train")
    from sparta_hpc.training.checkpoints import adopt_checkpoint
    from sparta_hpc.training.dpo import run_dpo_job

    progress = UnitProgress.open(run, t, "train", player, attempt_id(), chunks_total=0, items_total=1)
    work = run.train_attempt(t, player, progress.attempt)
    adopt_checkpoint(work, run.train_work(t, player))
    spec = players_at(run, t, cfg)[player]
    if cfg.train.wandb:  # one W&B run per player and iteration, its files in the run directory
        os.environ.setdefault("WANDB_DIR", str(run.root))
        os.environ.setdefault("WANDB_PROJECT", cfg.run.name)
        os.environ["WANDB_NAME"] = f"iter_{t:03d}-{player}"
    stats = run_dpo_job(
        cfg.train,
        base=str(spec["base"]),
        adapter_in=spec["adapter"],
        adapter_out=str(out),
        base_name=stored(run, spec["base"]),
        pairs_path=str(
            run.player_preferences(t, player) if cfg.run.mode == "self_rewarding" else run.preferences(t)
        ),
        work_dir=str(work),
        seed=stable_seed(cfg.run.seed, t, "train", player),
        use_cpu=not has_cuda(),
    )
    if cfg.train.wandb:
        import wandb

        wandb.finish()  # the next player trained in this process starts its own run
    write_json(run.train_stats(t, player), stats)
    progress.finish()
    shutil.rmtree(work, ignore_errors=True)  # other attempts' folders: removed by the launcher (train stage)
    return stats


def pair_counts(
    run: RunDir, t: int, players: list[str], max_drop_share: float
) -> tuple[dict[str, Any], list[str]]:
    """What the data policy did to the pairs of every player's job, summed (``sparta_hpc.training.data``), and
    the lines for the launcher log: the totals, then a warning per player that lost more than
    ``max_drop_share`` of its pairs (the job printed it in its own log before training)."""
    datas = {p: read_json(run.train_stats(t, p)).get("data") for p in players}
    found = {p: d for p, d in datas.items() if d is not None}  # a stub when another attempt published
    total = sum_data(list(found.values()), max_drop_share)
    warnings = [w for p, d in found.items() if (w := drop_warning(p, d, max_drop_share))]
    return total, [f"{len(found)} players' jobs: {data_line(total)}", *warnings]
