"""The stages ``sparta-hpc plan`` prices, for both layouts of ``run.stage_layout``: tasks, tokens, task times.

``separate``: generate shards, judge shards, one DPO job per player, evaluate tasks (``eval.units_per_task``
units each). ``combat`` (``auto`` when every player has the same base): one task per generate shard loads one
engine, generates and judges its matches and evaluates the models the previous iteration trained (iteration
0's: the initial models); one DPO job per player; only the last iteration's evaluation has tasks of its own,
packed into one wave of the cluster. vLLM gets at least ``engine.vllm_min_chunk`` requests per call.

Every task pays a start-up (``GPUType.engine_start_s`` / ``train_start_s``); every stage waits
``queue_wait_s`` in the queue before its tasks start. Idle GPUs are counted against the ``cluster.num_gpus``
the run may use: GPUs without a task in a stage, and GPUs that wait for the stage's longest task
(docs/plan.md).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path

from sparta_hpc.config import SpartaConfig
from sparta_hpc.tasks import evaluation
from sparta_hpc.tools.cost_model import GPUType, ModelShape, TokenAssumptions, decode_mfu

SEPARATE_STAGES = ("generate", "judge", "train", "evaluate")
COMBAT_STAGES = ("combat", "train", "evaluate")


@dataclass(frozen=True, kw_only=True)
class StageCost:
    """One stage of one iteration: tasks, tokens, FLOPs, task time, GPU-hours and idle GPUs."""

    stage: str
    jobs: int
    tasks: int
    """Array tasks; each starts one engine or trainer (a model start)."""
    gpus_per_task: int
    nodes_per_task: int
    prefill_tokens: int
    decode_tokens: int
    train_tokens: int
    flops: float
    decode_batch: int
    """Sequences decoded together by an engine (the smallest over the stage's kinds of work; 0: none)."""
    start_s: float
    """Start-up of one task (model load, engine or trainer start)."""
    compute_s: float
    """Compute time of the stage's longest task."""
    queue_wait_s: float
    """Queue wait before the stage's tasks start (``--queue-wait-s``)."""
    waves: int
    """Rounds of tasks ``cluster.num_gpus`` GPUs run one after the other."""
    startup_gpu_hours: float
    compute_gpu_hours: float
    gpu_hours: float
    """GPU-hours the tasks hold: start-up + compute (idle GPUs of the run not included)."""
    wall_hours: float
    """Queue wait + waves x (start-up + longest task's compute)."""
    idle_gpus: int
    """GPUs of ``cluster.num_gpus`` with no task in the stage's first wave."""
    idle_gpu_hours: float
    """GPU-hours of ``cluster.num_gpus`` without a task while the stage runs (queue wait excluded)."""
    note: str = ""

    @property
    def task_s(self) -> float:
        """Start-up + compute of the stage's longest task (what a time limit must cover)."""
        return self.start_s + self.compute_s


@dataclass(frozen=True, kw_only=True)
class _Part:
    """One kind of inference work of a stage: tokens, the shape of a request (for the decode batch), and the
    share of it the stage's longest task gets (1 / tasks when it is spread evenly)."""

    prefill: int
    decode: int
    prompt: int
    new: int
    chunk: int
    share: float


@dataclass(frozen=True, kw_only=True)
class _Work:
    """What one stage of one iteration computes, before any cost."""

    tasks: int
    gpus: int
    parts: tuple[_Part, ...] = ()
    train: int = 0
    note: str = ""


def is_combat(cfg: SpartaConfig) -> bool:
    """Whether ``run.stage_layout`` runs combat tasks: ``combat``, or ``auto`` with one base for all."""
    layout = cfg.run.stage_layout
    return layout == "combat" or (layout == "auto" and len({m.base for m in cfg.models}) == 1)


def stage_names(cfg: SpartaConfig) -> tuple[str, ...]:
    """The GPU stages of an iteration under ``run.stage_layout``."""
    return COMBAT_STAGES if is_combat(cfg) else SEPARATE_STAGES


def resources_of(stage: str) -> str:
    """The ``cluster`` section whose resources (and time limit) a stage's tasks get: a combat task runs as a
    ``generate`` task."""
    return "generate" if stage == "combat" else stage


def plan_run(
    cfg: SpartaConfig, gpu: GPUType, tokens: TokenAssumptions, shape: ModelShape, queue_wait_s: float = 0.0
) -> list[list[StageCost]]:
    """The cost of every GPU stage of every iteration (outer list: iterations)."""
    return [
        [_cost(cfg, s, _work(cfg, t, s, tokens), gpu, shape, queue_wait_s) for s in stage_names(cfg)]
        for t in range(cfg.run.iterations)
    ]


def _work(cfg: SpartaConfig, t: int, stage: str, tokens: TokenAssumptions) -> _Work:
    """Array tasks, logical GPUs per task and tokens of one stage of iteration t."""
    tp, chat_prompt = cfg.engine.tensor_parallel_size, tokens.chat_template + tokens.question
    if stage == "generate":
        shards = cfg.generate.num_shards
        return _Work(tasks=shards, gpus=tp, parts=(_generate(cfg, chat_prompt, shards),))
    if stage == "judge":
        return _Work(tasks=cfg.judge.num_shards, gpus=tp, parts=(_judge(cfg, tokens, cfg.judge.num_shards),))
    if stage == "train":  # every player on up to one pair per match: chosen and rejected sequences
        m, n = len(cfg.models), cfg.plan.num_prompts
        sequence = min(cfg.train.max_length, chat_prompt + cfg.generate.max_new_tokens)
        return _Work(tasks=m, gpus=cfg.train.num_ranks, train=m * n * 2 * sequence * cfg.train.epochs)
    if stage == "combat":
        shards = combat_shards(cfg)
        ev = _evaluate(cfg, combat_labels(cfg, t), chat_prompt, per_task=None, tasks=shards)
        parts = (_generate(cfg, chat_prompt, shards), _judge(cfg, tokens, shards), *ev.parts)
        what = "the initial models" if t == 0 else "the models of the previous iteration"
        note = f"and evaluates {what}" if ev.parts else ev.note.replace("no evaluation here", "")
        return _Work(tasks=shards, gpus=tp, parts=parts, note=note)
    if is_combat(cfg):  # only the last iteration's models, packed into one wave
        labels = [evaluation.label_after(t)] if t == cfg.run.iterations - 1 and cfg.eval.every else []
        return _evaluate(cfg, labels, chat_prompt, per_task=None)
    labels = evaluation.labels(t, cfg.eval.every, cfg.run.iterations)
    return _evaluate(cfg, labels, chat_prompt, per_task=cfg.eval.units_per_task)


def combat_shards(cfg: SpartaConfig) -> int:
    """Tasks of the combat stage: one per generate shard (``judge.num_shards`` is unused)."""
    return cfg.generate.num_shards


def engine_chunk(cfg: SpartaConfig, chunk_size: int) -> int:
    """Requests per engine call: vLLM gets at least ``engine.vllm_min_chunk`` (where the config has it)."""
    least = int(getattr(cfg.engine, "vllm_min_chunk", 1))
    return max(chunk_size, least) if cfg.engine.kind == "vllm" else chunk_size


def combat_labels(cfg: SpartaConfig, t: int) -> list[str]:
    """The model labels iteration t's combat tasks evaluate: the initial models at t = 0, else the models
    after t - 1 when an evaluation is due then (the last iteration's models have tasks of their own)."""
    if not cfg.eval.every:
        return []
    if t == 0:
        return [evaluation.INITIAL]
    due = evaluation.due(cfg.eval.every, t - 1, cfg.run.iterations)
    return [evaluation.label_after(t - 1)] if due else []


def _generate(cfg: SpartaConfig, chat_prompt: int, shards: int) -> _Part:
    n, new = cfg.plan.num_prompts, cfg.generate.max_new_tokens
    return _Part(prefill=2 * n * chat_prompt, decode=2 * n * new, prompt=chat_prompt, new=new,
                 chunk=engine_chunk(cfg, cfg.generate.chunk_size), share=1 / shards)  # fmt: skip


def _judge(cfg: SpartaConfig, tokens: TokenAssumptions, shards: int) -> _Part:
    judgments = 2 * cfg.plan.num_prompts * (len(cfg.models) - 2)  # both answers, every non-competing player
    prompt = tokens.chat_template + tokens.judge_template + tokens.question + cfg.generate.max_new_tokens
    if cfg.judge.max_prompt_tokens is not None:
        prompt = min(prompt, cfg.judge.max_prompt_tokens)
    if cfg.judge.method == "logprob":  # one prefill (+ the score prefix), one or two decode steps
        prompt, new = prompt + tokens.score_prefix, 2
    else:
        new = cfg.judge.max_new_tokens
    return _Part(prefill=judgments * prompt, decode=judgments * new, prompt=prompt, new=new,
                 chunk=engine_chunk(cfg, cfg.judge.chunk_size), share=1 / shards)  # fmt: skip


def _evaluate(
    cfg: SpartaConfig, labels: list[str], chat_prompt: int, per_task: int | None, tasks: int | None = None
) -> _Work:
    """The evaluation of ``labels``: ``per_task`` units per task, or (None) spread over ``tasks`` tasks
    (default: one wave of the cluster); a unit is one model on one shard of one split of one task."""
    tp = cfg.engine.tensor_parallel_size
    units = [(task, split) for _ in labels for _ in cfg.models for task in [cfg.task.name, *cfg.eval.tasks]
             for split in cfg.eval.splits for _ in range(cfg.eval.num_shards)]  # fmt: skip
    if not units:
        return _Work(tasks=0, gpus=tp, note="no evaluation here")
    counted = {unit: _num_examples(cfg, *unit) for unit in units}
    if any(n is None for n in counted.values()):
        unknown = "evaluation not counted: example counts unknown (prepare the data or set eval.max_examples)"
        return _Work(tasks=0, gpus=tp, note=unknown)
    answers = [(counted[unit] or 0) / cfg.eval.num_shards for unit in units]
    if per_task is None:
        slots = tasks or max(1, cfg.cluster.num_gpus // tp)
        per_task = math.ceil(len(units) / min(len(units), slots))
    groups = [answers[i : i + per_task] for i in range(0, len(answers), per_task)]
    total, new = sum(answers), cfg.eval.max_new_tokens
    share = max(map(sum, groups)) / total if total else 0.0
    part = _Part(prefill=round(total * chat_prompt), decode=round(total * new), prompt=chat_prompt, new=new,
                 chunk=engine_chunk(cfg, cfg.eval.chunk_size), share=share)  # fmt: skip
    return _Work(tasks=len(groups), gpus=tp, parts=(part,))


def _num_examples(cfg: SpartaConfig, task: str, split: str) -> int | None:
    """Examples of one evaluation split: synthetic size, or lines of the prepared file; None if unknown."""
    if task == "synthetic":
        count: int | None = cfg.task.synthetic_eval_size
    elif cfg.task.data_dir and (path := Path(cfg.task.data_dir) / task / f"{split}.jsonl").is_file():
        with path.open() as lines:
            count = sum(1 for line in lines if line.strip())
    else:
        count = None
    if cfg.eval.max_examples is not None:
        return cfg.eval.max_examples if count is None else min(count, cfg.eval.max_examples)
    return count


def _cost(
    cfg: SpartaConfig, stage: str, work: _Work, gpu: GPUType, shape: ModelShape, queue_wait_s: float
) -> StageCost:
    """FLOPs, GPU-hours, wall time and idle GPUs of one stage."""
    gpus, nodes = task_gpus(cfg, stage, work.gpus)
    f = 2 * shape.matmul_params
    train_factor = 3 + (1 if cfg.train.gradient_checkpointing else 0)
    batches = [decode_mfu(cfg, gpu, shape, requests=p.chunk, prompt=p.prompt, new=p.new) for p in work.parts]
    part_seconds = [
        f * (p.prefill / gpu.prefill_flops + p.decode / (gpu.peak_tflops * 1e12 * mfu))
        for p, (_, mfu) in zip(work.parts, batches, strict=True)
    ]
    train_seconds = f * train_factor * work.train / gpu.train_flops
    gpu_seconds = train_seconds + sum(part_seconds)
    if not work.tasks:
        return _empty(stage, gpus, nodes, work.note)
    start = gpu.train_start_s if stage == "train" else gpu.engine_start_s
    longest = sum(s * p.share for s, p in zip(part_seconds, work.parts, strict=True))
    compute = (longest + train_seconds / work.tasks) / gpus  # every player trains on the same pairs
    slots = max(1, cfg.cluster.num_gpus // gpus)
    waves = math.ceil(work.tasks / slots)
    busy_s = work.tasks * gpus * start + gpu_seconds
    held_s = cfg.cluster.num_gpus * waves * (start + compute)
    return StageCost(
        stage=stage, jobs=1, tasks=work.tasks, gpus_per_task=gpus, nodes_per_task=nodes,
        prefill_tokens=sum(p.prefill for p in work.parts), decode_tokens=sum(p.decode for p in work.parts),
        train_tokens=work.train,
        flops=f * (sum(p.prefill + p.decode for p in work.parts) + train_factor * work.train),
        decode_batch=min((b for b, _ in batches), default=0), start_s=start, compute_s=compute,
        queue_wait_s=queue_wait_s, waves=waves, startup_gpu_hours=work.tasks * gpus * start / 3600,
        compute_gpu_hours=gpu_seconds / 3600, gpu_hours=busy_s / 3600,
        wall_hours=(queue_wait_s + waves * (start + compute)) / 3600,
        idle_gpus=max(0, cfg.cluster.num_gpus - min(work.tasks, slots) * gpus),
        idle_gpu_hours=max(0.0, held_s - busy_s) / 3600, note=work.note,
    )  # fmt: skip


def _empty(stage: str, gpus: int, nodes: int, note: str) -> StageCost:
    """A stage with no task in this iteration."""
    return StageCost(
        stage=stage, jobs=0, tasks=0, gpus_per_task=gpus, nodes_per_task=nodes, prefill_tokens=0,
        decode_tokens=0, train_tokens=0, flops=0.0, decode_batch=0, start_s=0.0, compute_s=0.0,
        queue_wait_s=0.0, waves=0, startup_gpu_hours=0.0, compute_gpu_hours=0.0, gpu_hours=0.0,
        wall_hours=0.0, idle_gpus=0, idle_gpu_hours=0.0, note=note,
    )  # fmt: skip


def task_gpus(cfg: SpartaConfig, stage: str, logical: int) -> tuple[int, int]:
    """GPUs and nodes of one task: what its ``cluster`` section asks Slurm for, else the logical count."""
    resources = getattr(cfg.cluster, resources_of(stage), None)
    if resources is not None and resources.nodes * resources.gpus_per_node:
        return resources.nodes * resources.gpus_per_node, resources.nodes
    return logical, math.ceil(logical / cfg.cluster.gpus_per_node)


def train_options(
    cfg: SpartaConfig, gpu: GPUType, tokens: TokenAssumptions, shape: ModelShape
) -> list[dict[str, object]]:
    """Ways to lay the train stage's DPO jobs on ``cluster.num_gpus`` GPUs, priced alike (docs/plan.md):
    wall time, GPU-hours the tasks hold, GPU-hours of the cluster over the stage (idle included), starts.

    Every player trains on the same pairs, so its job costs W GPU-seconds on one rank; r ranks take W / r
    each (communication of the LoRA gradients ignored: optimistic) but multiply the effective batch by r,
    which changes the trained adapters; p players in one task load the base once and train one after the
    other (same adapters, ``(p - 1)`` start-ups saved, p x W of wall time).
    """
    m, g, start = len(cfg.models), cfg.cluster.num_gpus, gpu.train_start_s
    one = _cost(cfg, "train", _work(cfg, 0, "train", tokens), gpu, shape, 0.0)
    w = one.compute_s * one.gpus_per_task  # one player's compute on one rank
    spare = min(m, max(0, g - m))
    layouts = {
        "one rank per player": ([(1, start + w)] * m, False),
        f"two ranks for {spare} of {m} players": (
            [(2, start + w / 2)] * spare + [(1, start + w)] * (m - spare), True),
        "two players per task": ([(1, start + 2 * w)] * (m // 2) + [(1, start + w)] * (m % 2), False),
        "two ranks for every player": ([(2, start + w / 2)] * m, True),
    }  # fmt: skip
    if not 0 < spare < m:  # no spare GPU, or every player gets two: the last row says it
        del layouts[f"two ranks for {spare} of {m} players"]
    rows: list[dict[str, object]] = []
    for name, (jobs, changes) in layouts.items():
        wall = _makespan(jobs, g)
        busy = sum(n * s for n, s in jobs)
        rows.append({"layout": name, "starts": len(jobs), "wall_s": wall, "gpu_hours": busy / 3600,
                     "cluster_gpu_hours": g * wall / 3600, "changes_results": changes})  # fmt: skip
    return rows


def _makespan(jobs: list[tuple[int, float]], num_gpus: int) -> float:
    """When the last of ``jobs`` ((GPUs, seconds) each) ends on ``num_gpus`` GPUs, longest first, each
    started as soon as enough GPUs are free."""
    free = [0.0] * num_gpus
    for n, seconds in sorted(jobs, key=lambda job: -job[1]):
        free.sort()
        begin = free[min(n, num_gpus) - 1]
        free[: min(n, num_gpus)] = [begin + seconds] * min(n, num_gpus)
    return max(free)
