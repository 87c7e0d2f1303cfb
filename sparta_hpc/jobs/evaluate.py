"""The evaluate job: greedy answers and scores of one array task's evaluation units."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from sparta_hpc.config import SpartaConfig
from sparta_hpc.engines.base import Request, Sampling
from sparta_hpc.jobs.common import (
    attempt_id,
    engine_chunk,
    load_engine,
    num_chunks,
    open_run,
    publish_records,
    run_chunks,
    set_threads,
    split_evenly,
    stable_seed,
)
from sparta_hpc.jobs.models import eval_judge_model
from sparta_hpc.store.models import evaluated_models, user_paths
from sparta_hpc.store.progress import UnitProgress
from sparta_hpc.store.rundir import RunDir
from sparta_hpc.tasks import evaluation
from sparta_hpc.tasks.evaluation import EvalRecord, EvalUnit
from sparta_hpc.tasks.own import read_rubric
from sparta_hpc.tasks.pool import task_template
from sparta_hpc.tasks.prompts import build_prompt
from sparta_hpc.tasks.schema import TaskExample


def evaluate_shard(run_root: str, t: int, task: int) -> int:
    """Greedy answers and scores of array task ``task``'s evaluation units (``evaluation.task_units``).

    Each unit's records are one file, written when the unit ends; finished chunks are saved as they go.
    Returns the number of new records, or -1 when every unit of the task was already done.
    """
    run, cfg = open_run(run_root)
    units = evaluation.plan_units(t, cfg.player_names, cfg.eval, cfg.run.iterations, cfg.eval_folded)
    mine = evaluation.task_units(units, cfg.eval.units_per_task)[task]
    todo = [u for u in mine if not run.eval_records(t, u.label, u.player, u.split, u.shard, u.task).exists()]
    if not todo:
        return -1
    models = evaluated_models(run, t, user_paths([*cfg.models, cfg.eval.judge_model]))
    players = {_eval_name(u): models[u.label][u.player] for u in todo}
    cache: list[Any] = []

    def engine() -> Any:
        if not cache:
            set_threads(cfg, "evaluate")
            if evaluation.needs_judge(cfg.task, cfg.eval):
                players[evaluation.JUDGE] = eval_judge_model(run, cfg)
            cache.append(load_engine(cfg, players))
        return cache[0]

    return evaluate_units(run, cfg, t, todo, engine, _eval_name, str(task))


def evaluate_units(
    run: RunDir,
    cfg: SpartaConfig,
    t: int,
    units: list[EvalUnit],
    engine: Callable[[], Any],
    model: Callable[[EvalUnit], str],
    unit: str,
) -> int:
    """Evaluate ``units`` (those not written yet) with ``engine()``, where unit u's model is named
    ``model(u)``: ``label/player`` in an evaluate task, the player's own name in a combat task (whose engine
    holds the players as they generate). ``unit`` names the progress file. The number of new records."""
    todo = [u for u in units if not run.eval_records(t, u.label, u.player, u.split, u.shard, u.task).exists()]
    if not todo:
        return 0
    examples = {
        (u.task, u.split): evaluation.split_examples(
            evaluation.unit_task(cfg.task, u.task), cfg.eval, cfg.run.seed, u.split
        )
        for u in todo
    }
    shards = [split_evenly(examples[u.task, u.split], cfg.eval.num_shards, u.shard) for u in todo]
    chunk = engine_chunk(cfg, cfg.eval.chunk_size)
    progress = UnitProgress.open(
        run, t, "evaluate", unit, attempt_id(),
        chunks_total=sum(num_chunks(len(s), chunk) for s in shards),
        items_total=sum(len(s) for s in shards),
    )  # fmt: skip
    new = sum(
        _evaluate_unit(run, cfg, t, u, s, engine, model(u), progress)
        for u, s in zip(todo, shards, strict=True)
    )
    progress.finish()
    return new


def _eval_name(unit: EvalUnit) -> str:
    return f"{unit.label}/{unit.player}"


def _evaluate_unit(
    run: RunDir,
    cfg: SpartaConfig,
    t: int,
    u: EvalUnit,
    examples: list[TaskExample],
    engine: Callable[[], Any],
    model: str,
    progress: UnitProgress,
) -> int:
    """Answer and score one unit's examples chunk by chunk; write its record file."""
    by_id = {e.id: e for e in examples}
    task = evaluation.unit_task(cfg.task, u.task)
    requests = [
        Request(
            request_id=e.id,
            model=model,
            prompt=build_prompt(task.name, e, task_template(task)),
            seed=stable_seed(cfg.run.seed, "evaluate", e.id),
        )
        for e in examples
    ]
    sampling = Sampling(max_new_tokens=cfg.eval.max_new_tokens, greedy=True)
    judged = evaluation.needs_judge(cfg.task, cfg.eval)
    rubric = read_rubric(cfg.eval.judge_rubric_file, "eval.judge_rubric_file") if judged else None

    def compute(chunk: list[Request]) -> list[dict[str, Any]]:
        completions = engine().generate(chunk, sampling)
        scored = evaluation.score_answers(task, cfg.eval, engine(), chunk, completions, by_id, rubric)
        return [
            EvalRecord(
                id=r.request_id,
                player=u.player,
                iteration=u.label,
                split=u.split,
                output=c.text,
                num_tokens=c.num_new_tokens,
                extracted=extracted,
                score=score,
                judge_output=judge_output,
                task=u.task,
            ).to_dict()
            for r, c, (extracted, score, judge_output) in zip(chunk, completions, scored, strict=True)
        ]

    key = (t, u.label, u.player, u.split, u.shard, u.task)
    out, parts = run.eval_records(*key), run.eval_parts(*key)
    records = run_chunks(parts, out, requests, engine_chunk(cfg, cfg.eval.chunk_size), compute, progress)
    return 0 if records is None else max(0, publish_records(out, parts, records))
