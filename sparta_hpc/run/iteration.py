"""The SPARTA loop: every stage of an iteration, in order, in one place.

Each stage has the same four beats: skip if the state records it done, compute (in this process) or submit
jobs, wait, record its outputs with checksums in the state. Resuming a run is running it again.
"""

from __future__ import annotations

import errno
import shutil
import time
from collections.abc import Callable
from typing import Any

from sparta_hpc import jobs
from sparta_hpc.config import SpartaConfig
from sparta_hpc.errors import ConfigError, SpartaError, StageFailed
from sparta_hpc.files import (
    nearly_full,
    parse_records,
    read_json,
    refused_write,
    remove_temporaries,
    unwritable,
    write_json,
    write_jsonl,
)
from sparta_hpc.jobs.train import pair_counts
from sparta_hpc.method import matchmaking, ratings
from sparta_hpc.run import scalars, selfreward
from sparta_hpc.run.inputs import (
    eval_players,
    judged_matches,
    players_after,
    rating_history,
    ratings_at_start,
)
from sparta_hpc.run.resume import open_state, sync_summary
from sparta_hpc.run.scheduler import Runner, StageJobs
from sparta_hpc.store.events import STAGE_END, STAGE_START, EventLog
from sparta_hpc.store.models import stored_models
from sparta_hpc.store.rundir import RunDir
from sparta_hpc.store.state import (
    LauncherLock,
    RunState,
    checksums,
    leaderboard_text,
    save_state,
)
from sparta_hpc.tasks import evaluation
from sparta_hpc.tasks.pool import prompt_pool

Log = Callable[[str], None]


def run(
    cfg: SpartaConfig,
    run_dir: RunDir,
    *,
    force: bool = False,
    log: Log = print,
    launcher_job: str | None = None,
) -> RunState:
    """Run (or resume) every iteration; holds the launcher lock throughout. ``launcher_job``: the Slurm job
    id of this launcher when it runs as a job (``--detach``), recorded in the state."""
    try:
        with LauncherLock(run_dir):
            run_dir.cancel_file.unlink(missing_ok=True)  # running again resumes a cancelled run
            state = open_state(cfg, run_dir, force, log)
            if launcher_job is not None:
                state.launcher_job = launcher_job
                save_state(run_dir, state)
            while not state.done:
                run_iteration(state.iteration, cfg, run_dir, state, log)
            return state
    except Exception as e:  # a full or read-only file system: one message, not a library's traceback
        code = _refused_write(e, run_dir)
        if code is None:
            raise
        detail = str(e) if isinstance(e, SpartaError) else f"{type(e).__name__}: {e}".splitlines()[0]
        raise unwritable(run_dir.root, code, detail) from e


def _refused_write(e: Exception, run: RunDir) -> int | None:
    """The errno (ENOSPC, EDQUOT, EROFS) of a write the run directory's file system refused, if that is what
    stopped the launcher: its own error, or a job's (whose error text is cut off when the disk is full)."""
    if isinstance(e, StageFailed):
        return refused_write(RuntimeError(e.error)) or (errno.ENOSPC if nearly_full(run.root) else None)
    return None if isinstance(e, SpartaError) else refused_write(e)


def run_iteration(t: int, cfg: SpartaConfig, run: RunDir, state: RunState, log: Log) -> None:
    """One SPARTA iteration, then commit it to the state."""
    ex = Runner(cfg, run, state, log)
    # plan: sample prompts and pair players (pure, seeded by run.seed and t)
    _stage(t, "plan", state, run, log, lambda: plan(t, cfg, run, ex))
    # generate: both players of every match answer its prompt (array job over match shards)
    _stage(t, "generate", state, run, log, lambda: generate(t, cfg, run, ex))
    # judge: every other player scores both answers (array job over match shards)
    _stage(t, "judge", state, run, log, lambda: judge(t, cfg, run, ex))
    # rate: sequential reputation update and preference pairs (pure, in this process)
    _stage(t, "rate", state, run, log, lambda: rate(t, cfg, run))
    # train: LoRA-DPO of every player on the shared pairs (one job per player; self_rewarding: its own pairs)
    _stage(t, "train", state, run, log, lambda: train(t, cfg, run, ex))
    # evaluate: held-out task scores of the new adapters (array job over players x split shards)
    _stage(t, "evaluate", state, run, log, lambda: evaluate(t, cfg, run, ex))
    commit(t, cfg, run, state)
    if cfg.run.tensorboard:
        scalars.write_iteration(run, state, t)
    board = leaderboard_text(state.leaderboard())
    log(f"iteration {t + 1}/{cfg.run.iterations} committed\n{board}")


StageResult = tuple[list[Any], dict[str, Any]]
"""A stage's output paths (checksummed into the state) and a small summary for the state and the log."""


def _stage(
    t: int, name: str, state: RunState, run: RunDir, log: Log, body: Callable[[], StageResult]
) -> None:
    if state.is_done(t, name):
        return
    events = EventLog(run)
    events.emit(STAGE_START, iteration=t, stage=name)
    start = time.monotonic()
    outputs, info = body()
    remove_temporaries(run.stage(t, name))  # what killed attempts left half-written; never read
    info["seconds"] = round(time.monotonic() - start, 3)
    state.mark_done(t, name, checksums(run, outputs), info)
    save_state(run, state)
    events.emit(STAGE_END, iteration=t, stage=name, seconds=info["seconds"])
    summary = ", ".join(f"{k} {v}" for k, v in info.items() if k != "seconds" and not isinstance(v, dict))
    log(f"[iter {t}] {name:<8} done in {info['seconds']:.1f}s  {summary}")


def plan(t: int, cfg: SpartaConfig, run: RunDir, ex: Runner) -> StageResult:
    players = _players_at_start(t, cfg, run, ex)
    start = ratings_at_start(t, cfg, run)
    pool = prompt_pool(cfg.task, cfg.run.seed)
    if cfg.plan.num_prompts > len(pool):
        raise ConfigError(
            f"plan.num_prompts={cfg.plan.num_prompts} but task {cfg.task.name!r} has {len(pool)} prompts"
        )
    chosen = matchmaking.sample_prompts(len(pool), cfg.plan.num_prompts, cfg.run.seed, t, cfg.plan.prompts)
    if cfg.run.mode == "self_rewarding":  # one self match per prompt and player: no match-making
        matches = selfreward.self_matches([pool[i] for i in chosen], cfg.player_names, t)
    else:
        matches = matchmaking.plan_matches(
            [pool[i] for i in chosen],
            cfg.player_names,
            {p: r.rating for p, r in start.items()},
            cfg.plan,
            seed=cfg.run.seed,
            iteration=t,
        )
    write_jsonl(run.matches(t), [m.to_dict() for m in matches])
    write_json(run.players(t), stored_models(run, players))  # relative inside the run: relocatable
    return [run.matches(t), run.players(t)], {"matches": len(matches)}


def generate(t: int, cfg: SpartaConfig, run: RunDir, ex: Runner) -> StageResult:
    results = ex.run(_shard_jobs(t, "generate", cfg.generate.num_shards, jobs.generate_shard, run))
    shards = range(cfg.generate.num_shards)
    return [run.shard(t, "generate", s) for s in shards], {"shards": len(shards), "new": _new(results)}


def judge(t: int, cfg: SpartaConfig, run: RunDir, ex: Runner) -> StageResult:
    results = ex.run(_shard_jobs(t, "judge", cfg.judge.num_shards, jobs.judge_shard, run))
    shards = range(cfg.judge.num_shards)
    return [run.shard(t, "judge", s) for s in shards], {"shards": len(shards), "new": _new(results)}


def _shard_jobs(t: int, stage: str, num_shards: int, fn: Callable[..., int], run: RunDir) -> StageJobs:
    """One unit per shard; a shard is done when its record file exists."""
    units = {str(s): (str(run.root), t, s) for s in range(num_shards)}
    return StageJobs(t, stage, fn, units, is_done=lambda unit: run.shard(t, stage, int(unit)).exists())


def _new(results: dict[str, Any]) -> int:
    """Records the jobs of this launcher wrote (a unit finished earlier counts none)."""
    return sum(c for c in results.values() if isinstance(c, int) and c > 0)


def rate(t: int, cfg: SpartaConfig, run: RunDir) -> StageResult:
    if cfg.run.mode == "self_rewarding":  # each player's own best vs worst answers; ratings unchanged
        start = {p: r.to_dict() for p, r in sorted(ratings_at_start(t, cfg, run).items())}
        return selfreward.rate(t, cfg, run, start)
    judged = judged_matches(t, cfg, run)
    result = ratings.rate_iteration(
        judged, ratings_at_start(t, cfg, run), rating_history(run, t), cfg.rate, t
    )
    write_jsonl(run.judged(t), [j.to_dict() for j in judged])
    write_json(run.ratings(t), {p: r.to_dict() for p, r in sorted(result.ratings.items())})
    write_jsonl(run.preferences(t), [p.to_dict() for p in result.pairs])
    report = result.report()
    write_json(run.rate_report(t), report)
    outputs = [run.judged(t), run.ratings(t), run.preferences(t), run.rate_report(t)]
    failed = sum(c["failed"] for c in result.judge_counts.values())
    return outputs, {"pairs": len(result.pairs), "failed_judgments": failed}


def train(t: int, cfg: SpartaConfig, run: RunDir, ex: Runner) -> StageResult:
    if not read_json(run.rate_report(t))["num_pairs"]:
        ex.log(
            f"[iter {t}] train    skipped: no preference pair survived judging; adapters carry over unchanged"
        )
        return [], {"trained": False}
    report = read_json(run.rate_report(t))
    players = [p for p in cfg.player_names if report.get("pairs_per_player", {}).get(p, 1)]
    units = {p: (str(run.root), t, p) for p in players}
    ex.run(StageJobs(t, "train", jobs.train_player, units, is_done=lambda p: run.train_stats(t, p).exists()))
    for p in players:  # checkpoints of attempts that were lost or lost the race to publish
        shutil.rmtree(run.train_work(t, p), ignore_errors=True)
    pairs, lines = pair_counts(run, t, players, cfg.train.max_drop_share)
    for line in lines:  # the jobs apply the data policy (it needs each base's tokenizer): told when they end
        ex.log(f"[iter {t}] train    {line}")
    return [run.adapter(t, p) for p in players], {"trained": True, "pairs": pairs}


def evaluate(t: int, cfg: SpartaConfig, run: RunDir, ex: Runner) -> StageResult:
    labels = evaluation.labels(t, cfg.eval.every, cfg.run.iterations)
    if not labels:
        return [], {"evaluated": False}
    evaluated = {label: stored_models(run, eval_players(label, t, cfg, run)) for label in labels}
    write_json(run.eval_models(t), evaluated)
    units = evaluation.plan_units(t, cfg.player_names, cfg.eval, cfg.run.iterations)
    tasks = evaluation.task_units(units, cfg.eval.units_per_task)
    num_tasks = len(tasks)

    def task_done(task: str) -> bool:
        return all(
            run.eval_records(t, u.label, u.player, u.split, u.shard, u.task).exists()
            for u in tasks[int(task)]
        )

    task_args = {str(i): (str(run.root), t, i) for i in range(num_tasks)}
    results = ex.run(StageJobs(t, "evaluate", jobs.evaluate_shard, task_args, is_done=task_done))
    paths = [run.eval_records(t, u.label, u.player, u.split, u.shard, u.task) for u in units]
    scores, unscored = evaluation.summarize(
        r for p in paths for r in parse_records(p, evaluation.EvalRecord.from_dict)
    )
    info = {"evaluated": True, "tasks": num_tasks, "new": _new(results)}
    return [run.eval_models(t), *paths], info | evaluation.stage_info(scores, cfg.player_names, unscored)


def commit(t: int, cfg: SpartaConfig, run: RunDir, state: RunState) -> None:
    state.iteration = t + 1
    sync_summary(state, cfg, run)
    save_state(run, state)


def _players_at_start(t: int, cfg: SpartaConfig, run: RunDir, ex: Runner) -> dict[str, dict[str, str | None]]:
    """Each player's base and adapter at the start of iteration t (built at t = 0, in a small CPU job)."""
    if t == 0:
        return ex.run(StageJobs(0, "plan", jobs.prepare_models, {"models": (str(run.root),)}))["models"]
    return players_after(t - 1, cfg, run)
