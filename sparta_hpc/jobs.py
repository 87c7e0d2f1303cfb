"""Node-side entry points, one per kind of job. Arguments are paths and numbers, never models.

Each job reads its inputs from the run directory, writes its outputs atomically and returns a small summary.
Generation and judging save finished chunks as they go (``shard_parts``), so a preempted or killed job that
runs again continues after its last saved chunk; a finished shard is skipped entirely.
"""

from __future__ import annotations

import hashlib
import os
import shutil
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from sparta_hpc import evaluation
from sparta_hpc.config import TINY, SpartaConfig, load_config
from sparta_hpc.engines.base import ModelSpec, Request, Sampling
from sparta_hpc.evaluation import EvalRecord, EvalUnit
from sparta_hpc.method import judging
from sparta_hpc.method.types import Generation, Judgment, Match
from sparta_hpc.rundir import RunDir, parse_records, read_json, read_jsonl, write_json, write_jsonl
from sparta_hpc.tasks.prompts import build_prompt
from sparta_hpc.tasks.schema import TaskExample


def stable_seed(*parts: object) -> int:
    """A 31-bit seed from any parts, equal across processes and machines."""
    digest = hashlib.sha256("/".join(str(p) for p in parts).encode()).digest()
    return int.from_bytes(digest[:4], "big") & 0x7FFFFFFF


def open_run(run_root: str) -> tuple[RunDir, SpartaConfig]:
    run = RunDir(run_root)
    return run, load_config(run.config_file)


def split_evenly(items: Sequence[Any], num_shards: int, shard: int) -> list[Any]:
    """Contiguous shard ``shard`` of ``num_shards`` near-equal parts (earlier shards take the remainder)."""
    size, extra = divmod(len(items), num_shards)
    start = shard * size + min(shard, extra)
    return list(items[start : start + size + (1 if shard < extra else 0)])


# ---------------------------------------------------------------- models


def prepare_models(run_root: str) -> dict[str, dict[str, str | None]]:
    """Build the tiny base and tiny adapters the config asks for; return each player's base and adapter."""
    run, cfg = open_run(run_root)
    from sparta_hpc.engines.tiny import build_tiny_adapter, build_tiny_base

    players: dict[str, dict[str, str | None]] = {}
    for i, m in enumerate(cfg.models):
        base = str(build_tiny_base(run.tiny_base, seed=cfg.tiny.seed)) if m.base == TINY else m.base
        adapter = m.adapter
        if adapter == TINY:
            seed = stable_seed(cfg.tiny.seed, "adapter", i, m.name)
            adapter = str(
                build_tiny_adapter(base, run.initial_adapter(m.name), seed=seed, rank=cfg.tiny.lora_rank)
            )
        players[m.name] = {"base": base, "adapter": adapter}
    return players


def player_specs(players: dict[str, dict[str, str | None]]) -> list[ModelSpec]:
    return [ModelSpec(name=n, base=str(p["base"]), adapter=p["adapter"]) for n, p in players.items()]


def _players(run: RunDir, t: int) -> dict[str, dict[str, str | None]]:
    return read_json(run.players(t))


def _engine(cfg: SpartaConfig, players: dict[str, dict[str, str | None]]) -> Any:
    specs = player_specs(players)
    if cfg.engine.kind == "vllm":
        from sparta_hpc.engines.vllm import VLLMEngine

        return VLLMEngine(specs, cfg.engine)
    from sparta_hpc.engines.hf import HFEngine

    return HFEngine(
        specs,
        dtype=cfg.engine.dtype,
        batch_size=cfg.engine.batch_size,
        trust_remote_code=cfg.engine.trust_remote_code,
    )


def _has_cuda() -> bool:
    import torch

    return torch.cuda.is_available()


def _set_threads(cfg: SpartaConfig, stage: str) -> None:
    """As many torch threads as the stage's jobs have CPUs (the same inline, locally and on Slurm).

    OMP_NUM_THREADS too, unless set: accelerate otherwise sets torch's threads to all physical cores in a
    Slurm job, and two jobs sharing a node then oversubscribe it (DPO ran 30x slower on 2 cores).
    """
    import torch

    threads = max(1, min(cfg.cluster.resources(stage).cpus_per_task, os.cpu_count() or 1))
    os.environ.setdefault("OMP_NUM_THREADS", str(threads))
    torch.set_num_threads(threads)


# ---------------------------------------------------------------- chunked shards


def _run_chunks(
    parts: Path,
    requests: list[Request],
    chunk_size: int,
    compute: Callable[[list[Request]], list[dict[str, Any]]],
) -> list[dict[str, Any]]:
    """Compute every chunk not saved yet (one file per chunk), then return all chunk results in order."""
    chunks = [requests[i : i + chunk_size] for i in range(0, len(requests), chunk_size)]
    saved = sum((parts / f"chunk_{i:05d}.jsonl").exists() for i in range(len(chunks)))
    if saved:
        print(f"{parts}: resuming after {saved}/{len(chunks)} saved chunks", flush=True)
    for i, chunk in enumerate(chunks):
        path = parts / f"chunk_{i:05d}.jsonl"
        if not path.exists():
            write_jsonl(path, compute(chunk))
    results: list[dict[str, Any]] = []
    for i in range(len(chunks)):
        results += read_jsonl(parts / f"chunk_{i:05d}.jsonl")
    return results


def _finish_shard(run: RunDir, t: int, stage: str, shard: int, records: list[dict[str, Any]]) -> None:
    write_jsonl(run.shard(t, stage, shard), records)
    shutil.rmtree(run.shard_parts(t, stage, shard), ignore_errors=True)


def _shard_matches(run: RunDir, t: int, num_shards: int, shard: int) -> list[Match]:
    return split_evenly(parse_records(run.matches(t), Match.from_dict), num_shards, shard)


def generate_shard(run_root: str, t: int, shard: int) -> int:
    """Both players of every match of the shard answer its prompt. Returns the number of generations."""
    run, cfg = open_run(run_root)
    if run.shard(t, "generate", shard).exists():
        return -1
    matches = _shard_matches(run, t, cfg.generate.num_shards, shard)
    requests = [
        Request(
            request_id=f"{m.match_id}/{p}",
            model=p,
            prompt=m.prompt,
            seed=stable_seed(cfg.run.seed, t, m.match_id, p),
        )
        for m in matches
        for p in m.players
    ]
    g = cfg.generate
    sampling = Sampling(
        max_new_tokens=g.max_new_tokens, temperature=g.temperature, top_k=g.top_k, top_p=g.top_p
    )
    engine: list[Any] = []

    def compute(chunk: list[Request]) -> list[dict[str, Any]]:
        if not engine:
            _set_threads(cfg, "generate")
            engine.append(_engine(cfg, _players(run, t)))
        return [
            Generation(
                match_id=r.request_id.rsplit("/", 1)[0],
                player=r.model,
                response=c.text,
                num_tokens=c.num_new_tokens,
            ).to_dict()
            for r, c in zip(chunk, engine[0].generate(chunk, sampling), strict=True)
        ]

    records = _run_chunks(run.shard_parts(t, "generate", shard), requests, g.chunk_size, compute)
    _finish_shard(run, t, "generate", shard, records)
    return len(records)


def judge_requests(
    cfg: SpartaConfig, t: int, matches: list[Match], responses: dict[tuple[str, str], str]
) -> list[Request]:
    """Every non-competing player judges both responses of every match, one request per response."""
    prefix = judging.SCORE_PREFIX if cfg.judge.method == "logprob" else ""
    requests = []
    for m in matches:
        for judge in cfg.player_names:
            if judge in m.players:
                continue
            for side, player in zip("ab", m.players, strict=True):
                requests.append(
                    Request(
                        request_id=f"{m.match_id}/{judge}/{side}",
                        model=judge,
                        prompt=judging.judge_prompt(m.prompt, responses[(m.match_id, player)]),
                        seed=stable_seed(cfg.run.seed, t, m.match_id, judge, side),
                        assistant_prefix=prefix,
                        max_prompt_tokens=cfg.judge.max_prompt_tokens,
                    )
                )
    return requests


def read_generations(run: RunDir, t: int, num_shards: int) -> dict[tuple[str, str], str]:
    out = {}
    for shard in range(num_shards):
        for g in parse_records(run.shard(t, "generate", shard), Generation.from_dict):
            out[(g.match_id, g.player)] = g.response
    return out


def judge_shard(run_root: str, t: int, shard: int) -> int:
    """Score both responses of every match of the shard by every other player. Returns judgments written."""
    run, cfg = open_run(run_root)
    if run.shard(t, "judge", shard).exists():
        return -1
    matches = _shard_matches(run, t, cfg.judge.num_shards, shard)
    requests = judge_requests(cfg, t, matches, read_generations(run, t, cfg.generate.num_shards))
    j = cfg.judge
    sampling = Sampling(
        max_new_tokens=j.max_new_tokens,
        temperature=j.temperature,
        top_k=j.top_k,
        top_p=j.top_p,
        json_score=cfg.engine.structured_judge,
    )
    engine: list[Any] = []

    def compute(chunk: list[Request]) -> list[dict[str, Any]]:
        if not engine:
            _set_threads(cfg, "judge")
            engine.append(_engine(cfg, _players(run, t)))
        if j.method == "logprob":
            return [
                {"request_id": r.request_id, "score": e.score, "raw": ""}
                for r, e in zip(chunk, engine[0].expected_scores(chunk), strict=True)
            ]
        return [
            {"request_id": r.request_id, "score": judging.parse_score(c.text), "raw": c.text}
            for r, c in zip(chunk, engine[0].generate(chunk, sampling), strict=True)
        ]

    results = _run_chunks(run.shard_parts(t, "judge", shard), requests, j.chunk_size, compute)
    records = [judgment.to_dict() for judgment in _pair_sides(results)]
    _finish_shard(run, t, "judge", shard, records)
    return len(records)


def _pair_sides(results: list[dict[str, Any]]) -> list[Judgment]:
    """Join the per-response results ``match/judge/a`` and ``match/judge/b`` into one Judgment each."""
    by_id = {r["request_id"]: r for r in results}
    judgments = []
    for r in results:
        match_id, judge, side = r["request_id"].rsplit("/", 2)
        if side != "a":
            continue
        b = by_id[f"{match_id}/{judge}/b"]
        judgments.append(
            Judgment(
                match_id=match_id, judge=judge, scores=(r["score"], b["score"]), raw=(r["raw"], b["raw"])
            )
        )
    return judgments


# ---------------------------------------------------------------- training


def train_player(run_root: str, t: int, player: str) -> dict[str, Any]:
    """LoRA-DPO one player on the iteration's shared preference pairs; resumes from its last checkpoint."""
    run, cfg = open_run(run_root)
    out = run.adapter(t, player)
    if out.exists() and run.train_stats(t, player).exists():
        return read_json(run.train_stats(t, player))
    _set_threads(cfg, "train")
    from sparta_hpc.training.dpo import run_dpo_job

    spec = _players(run, t)[player]
    stats = run_dpo_job(
        cfg.train,
        base=str(spec["base"]),
        adapter_in=spec["adapter"],
        adapter_out=str(out),
        pairs_path=str(run.preferences(t)),
        work_dir=str(run.train_work(t, player)),
        seed=stable_seed(cfg.run.seed, t, "train", player),
        use_cpu=not _has_cuda(),
    )
    write_json(run.train_stats(t, player), stats)
    shutil.rmtree(run.train_work(t, player), ignore_errors=True)
    return stats


# ---------------------------------------------------------------- evaluation


def evaluate_shard(run_root: str, t: int, task: int) -> int:
    """Greedy answers and scores of array task ``task``'s evaluation units (``evaluation.task_units``).

    Each unit's records are one file, written when the unit ends; finished chunks are saved as they go.
    Returns the number of new records, or -1 when every unit of the task was already done.
    """
    run, cfg = open_run(run_root)
    units = evaluation.plan_units(t, cfg.player_names, cfg.eval, cfg.run.iterations)
    mine = evaluation.task_units(units, cfg.eval.units_per_task)[task]
    todo = [u for u in mine if not run.eval_records(t, u.label, u.player, u.split, u.shard).exists()]
    if not todo:
        return -1
    models = read_json(run.eval_models(t))
    players = {_eval_name(u): models[u.label][u.player] for u in todo}
    cache: list[Any] = []

    def engine() -> Any:
        if not cache:
            _set_threads(cfg, "evaluate")
            if cfg.task.name == evaluation.ALPACA:
                players[evaluation.JUDGE] = _eval_judge(run, cfg)
            cache.append(_engine(cfg, players))
        return cache[0]

    examples = {split: evaluation.split_examples(cfg, split) for split in cfg.eval.splits}
    new = 0
    for u in todo:
        shard = split_evenly(examples[u.split], cfg.eval.num_shards, u.shard)
        new += _evaluate_unit(run, cfg, t, u, shard, engine)
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
) -> int:
    """Answer and score one unit's examples chunk by chunk; write its record file."""
    by_id = {e.id: e for e in examples}
    requests = [
        Request(
            request_id=e.id,
            model=_eval_name(u),
            prompt=build_prompt(cfg.task.name, e),
            seed=stable_seed(cfg.run.seed, "evaluate", e.id),
        )
        for e in examples
    ]
    sampling = Sampling(max_new_tokens=cfg.eval.max_new_tokens, greedy=True)

    def compute(chunk: list[Request]) -> list[dict[str, Any]]:
        completions = engine().generate(chunk, sampling)
        scored = evaluation.score_answers(cfg, engine(), chunk, completions, by_id)
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
            ).to_dict()
            for r, c, (extracted, score, judge_output) in zip(chunk, completions, scored, strict=True)
        ]

    parts = run.eval_parts(t, u.label, u.player, u.split, u.shard)
    records = _run_chunks(parts, requests, cfg.eval.chunk_size, compute)
    write_jsonl(run.eval_records(t, u.label, u.player, u.split, u.shard), records)
    shutil.rmtree(parts, ignore_errors=True)
    return len(records)


def _eval_judge(run: RunDir, cfg: SpartaConfig) -> dict[str, str | None]:
    """Base and adapter of ``eval.judge_model``, building the tiny ones it asks for."""
    judge = cfg.eval.judge_model
    assert judge is not None  # config: required for alpaca
    from sparta_hpc.engines.tiny import build_tiny_adapter, build_tiny_base

    base = str(build_tiny_base(run.tiny_base, seed=cfg.tiny.seed)) if judge.base == TINY else judge.base
    adapter = judge.adapter
    if adapter == TINY:
        seed = stable_seed(cfg.tiny.seed, "eval-judge", judge.name)
        adapter = str(
            build_tiny_adapter(base, run.eval_judge_adapter(judge.name), seed=seed, rank=cfg.tiny.lora_rank)
        )
    return {"base": base, "adapter": adapter}
