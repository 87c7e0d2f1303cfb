"""The combat job (``run.stage_layout=combat``): one task generates both answers of its shard's matches and
has the other players judge them with the engine it loaded once.

It writes exactly the records of a generate task and a judge task of the same shard (``generate/shard_*``
and ``judge/shard_*``, chunk by chunk in their ``.parts`` folders), so it resumes as they do: a task
preempted while judging finds the shard's generations published and continues after its last saved
judge chunk.
"""

from __future__ import annotations

from sparta_hpc.config import SpartaConfig
from sparta_hpc.jobs.common import LazyEngine, open_run, split_evenly
from sparta_hpc.jobs.evaluate import evaluate_units
from sparta_hpc.jobs.generate import generate_records, shard_generations
from sparta_hpc.jobs.judge import judge_records
from sparta_hpc.store.rundir import RunDir
from sparta_hpc.tasks import evaluation
from sparta_hpc.tasks.evaluation import EvalUnit


def combat_shard(run_root: str, t: int, shard: int) -> int:
    """Generate, then judge, every match of generate shard ``shard`` with one engine, then evaluate this
    shard's part of the models it loaded (``combat_eval_units``). Returns the number of records written
    (generations, judgments, evaluation records), -1 when all were there already."""
    run, cfg = open_run(run_root)
    units = combat_eval_units(cfg, t, shard)
    if combat_done(run, t, shard, units):
        return -1
    engine = LazyEngine(cfg, run, t)
    new = 0
    if not run.shard(t, "generate", shard).exists():
        new += max(0, generate_records(run, cfg, t, shard, engine))
    if not run.shard(t, "judge", shard).exists():
        responses = shard_generations(run, t, shard)
        new += max(0, judge_records(run, cfg, t, shard, engine, responses))
    new += evaluate_units(
        run, cfg, t, units, lambda: engine.get("evaluate"), lambda u: u.player, f"combat-{shard}"
    )
    return new


def combat_eval_units(cfg: SpartaConfig, t: int, shard: int) -> list[EvalUnit]:
    """The evaluation units combat task ``shard`` of iteration t runs (``evaluation.carried``: the models at
    the start of t, which it loaded to generate), an even share of them; none unless ``cfg.eval_folded``."""
    if not cfg.eval_folded:
        return []
    carried = evaluation.carried(t, cfg.eval.every, cfg.run.iterations)
    units = evaluation.plan_units(t, cfg.player_names, cfg.eval, cfg.run.iterations, folded=True)
    mine = [u for u in units if u.label in carried]
    return split_evenly(mine, cfg.generate.num_shards, shard)


def combat_done(run: RunDir, t: int, shard: int, units: list[EvalUnit]) -> bool:
    """Whether a combat task's outputs all exist: both shards and its evaluation units' records."""
    return all(run.shard(t, s, shard).exists() for s in ("generate", "judge")) and all(
        run.eval_records(t, u.label, u.player, u.split, u.shard, u.task).exists() for u in units
    )
