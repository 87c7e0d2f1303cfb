"""``sparta-hpc plan``: what a run will cost, before anything is submitted. Imports no torch, vllm or trl.

The cost model (docs/plan.md): a stage's work is counted in tokens, turned into FLOPs with
2 x (matmul parameters) per token and forward pass, and into GPU time with per-GPU-type constants: the peak
bf16 FLOP/s and the fraction of it reached by prefill, decoding and LoRA-DPO training (model FLOPs
utilisation, MFU), plus a fixed start-up time per task (loading the model, starting the engine). Users
calibrate these constants from their own logs (``--calibration FILE``; ``bench/gpu_iteration.py`` prints
MFU per stage). Token counts are upper bounds: every response uses its whole ``max_new_tokens``.
"""

from __future__ import annotations

import json
import math
from dataclasses import MISSING, asdict, dataclass, fields, replace
from pathlib import Path
from typing import Any

from sparta_hpc.config import SpartaConfig
from sparta_hpc.tasks import evaluation
from sparta_hpc.tools.cost_model import GPU_TYPES, GPUType, ModelShape, TokenAssumptions, model_shape
from sparta_hpc.tools.cost_model import memory_plan as memory_rows

GPU_STAGES = ("generate", "judge", "train", "evaluate")
"""Stages that run jobs on GPUs (plan and rate run in the controller process)."""


@dataclass(frozen=True, kw_only=True)
class StageCost:
    """One stage of one iteration: jobs, tokens, FLOPs and time on the configured cluster."""

    stage: str
    jobs: int
    tasks: int
    gpus_per_task: int
    nodes_per_task: int
    prefill_tokens: int
    decode_tokens: int
    train_tokens: int
    flops: float
    gpu_hours: float
    wall_hours: float
    note: str = ""


def plan_run(
    cfg: SpartaConfig, gpu: GPUType, tokens: TokenAssumptions, shape: ModelShape
) -> list[list[StageCost]]:
    """The cost of every GPU stage of every iteration (outer list: iterations)."""
    return [
        [_stage(cfg, t, stage, gpu, tokens, shape) for stage in GPU_STAGES] for t in range(cfg.run.iterations)
    ]


@dataclass(frozen=True, kw_only=True)
class _Work:
    """What one stage of one iteration computes, before any cost."""

    tasks: int
    gpus: int
    prefill: int = 0
    decode: int = 0
    train: int = 0
    note: str = ""


def _work(cfg: SpartaConfig, t: int, stage: str, tokens: TokenAssumptions) -> _Work:
    """Array tasks, logical GPUs per task and tokens of one stage (upper bounds, see the module doc)."""
    m, n = len(cfg.models), cfg.plan.num_prompts
    chat_prompt = tokens.chat_template + tokens.question
    tp = cfg.engine.tensor_parallel_size
    if stage == "generate":
        prefill, decode = 2 * n * chat_prompt, 2 * n * cfg.generate.max_new_tokens
        return _Work(tasks=cfg.generate.num_shards, gpus=tp, prefill=prefill, decode=decode)
    if stage == "judge":
        judgments = 2 * n * (m - 2)  # both responses of every match, by every non-competing player
        prompt = tokens.chat_template + tokens.judge_template + tokens.question + cfg.generate.max_new_tokens
        if cfg.judge.max_prompt_tokens is not None:
            prompt = min(prompt, cfg.judge.max_prompt_tokens)
        if cfg.judge.method == "logprob":  # one prefill (+ the score prefix), one or two decode steps
            prefill, decode = judgments * (prompt + tokens.score_prefix), judgments * 2
        else:
            prefill, decode = judgments * prompt, judgments * cfg.judge.max_new_tokens
        return _Work(tasks=cfg.judge.num_shards, gpus=tp, prefill=prefill, decode=decode)
    if stage == "train":  # every player on up to one pair per match: chosen and rejected sequences
        sequence = min(cfg.train.max_length, chat_prompt + cfg.generate.max_new_tokens)
        return _Work(tasks=m, gpus=cfg.train.num_ranks, train=m * n * 2 * sequence * cfg.train.epochs)
    tasks, prefill, decode, note = _evaluate_tokens(cfg, t, chat_prompt)
    return _Work(tasks=tasks, gpus=tp, prefill=prefill, decode=decode, note=note)


def _stage(
    cfg: SpartaConfig, t: int, stage: str, gpu: GPUType, tokens: TokenAssumptions, shape: ModelShape
) -> StageCost:
    """FLOPs, GPU-hours and wall time of one stage: its work spread evenly over its tasks."""
    work = _work(cfg, t, stage, tokens)
    gpus, nodes = _layout(cfg, stage, work.gpus)
    flops_per_token = 2 * shape.matmul_params
    train_factor = 3 + (1 if cfg.train.gradient_checkpointing else 0)
    flops = flops_per_token * (work.prefill + work.decode + train_factor * work.train)
    gpu_seconds = flops_per_token * (
        work.prefill / gpu.prefill_flops
        + work.decode / gpu.decode_flops
        + train_factor * work.train / gpu.train_flops
    )
    task_seconds = 0.0
    if work.tasks:
        start = gpu.train_start_s if stage == "train" else gpu.engine_start_s
        task_seconds = start + gpu_seconds / work.tasks / gpus
    waves = math.ceil(work.tasks / max(1, cfg.cluster.num_gpus // gpus))
    return StageCost(
        stage=stage, jobs=1 if work.tasks else 0, tasks=work.tasks, gpus_per_task=gpus, nodes_per_task=nodes,
        prefill_tokens=work.prefill, decode_tokens=work.decode, train_tokens=work.train, flops=flops,
        gpu_hours=work.tasks * gpus * task_seconds / 3600, wall_hours=waves * task_seconds / 3600,
        note=work.note,
    )  # fmt: skip


def _layout(cfg: SpartaConfig, stage: str, logical: int) -> tuple[int, int]:
    """GPUs and nodes of one task: what ``cluster.<stage>`` asks Slurm for, else the logical count."""
    resources = getattr(cfg.cluster, stage, None)
    if resources is not None and resources.nodes * resources.gpus_per_node:
        return resources.nodes * resources.gpus_per_node, resources.nodes
    return logical, math.ceil(logical / cfg.cluster.gpus_per_node)


def layout_notes(cfg: SpartaConfig) -> list[str]:
    """Where the config's Slurm resources and its GPU counts disagree (the plan counts what is asked)."""
    notes = []
    logical = {"generate": cfg.engine.tensor_parallel_size, "judge": cfg.engine.tensor_parallel_size,
               "train": cfg.train.num_ranks, "evaluate": cfg.engine.tensor_parallel_size}  # fmt: skip
    for stage, count in logical.items():
        resources = getattr(cfg.cluster, stage, None)
        if resources is None:
            continue
        requested = resources.nodes * resources.gpus_per_node
        if requested == 0:
            notes.append(f"cluster.{stage} asks for no GPU (gpus_per_node=0): counted as {count} GPU(s)")
        elif requested != count:
            notes.append(f"cluster.{stage} asks for {requested} GPU(s) per task but the job uses {count}")
    return notes


def _evaluate_tokens(cfg: SpartaConfig, t: int, chat_prompt: int) -> tuple[int, int, int, str]:
    """Array tasks, prefill and decode tokens of iteration t's evaluate stage, and a note."""
    units = evaluation.plan_units(t, [m.name for m in cfg.models], cfg.eval, cfg.run.iterations)
    if not units:
        return 0, 0, 0, "no evaluation after this iteration"
    counted = {split: _num_examples(cfg, split) for split in cfg.eval.splits}
    examples = {split: n for split, n in counted.items() if n is not None}
    if len(examples) < len(counted):
        return 0, 0, 0, "not counted: example counts unknown (prepare the data or set eval.max_examples)"
    tasks = len(evaluation.task_units(units, cfg.eval.units_per_task))
    answers = sum(examples[u.split] / cfg.eval.num_shards for u in units)
    return tasks, round(answers * chat_prompt), round(answers * cfg.eval.max_new_tokens), ""


def _num_examples(cfg: SpartaConfig, split: str) -> int | None:
    """Examples of one evaluation split: synthetic size, or lines of the prepared file; None if unknown."""
    if cfg.task.name == "synthetic":
        count: int | None = cfg.task.synthetic_eval_size
    elif cfg.task.data_dir and (path := Path(cfg.task.data_dir) / cfg.task.name / f"{split}.jsonl").is_file():
        with path.open() as lines:
            count = sum(1 for line in lines if line.strip())
    else:
        count = None
    if cfg.eval.max_examples is not None:
        return cfg.eval.max_examples if count is None else min(count, cfg.eval.max_examples)
    return count


def plan_report(cfg: SpartaConfig, calibration: dict[str, Any] | None = None) -> dict[str, Any]:
    """Everything ``plan`` prints, as plain data (``--json``)."""
    gpu, tokens = _calibrated(cfg.cluster.gpu_type, calibration or {})
    shape = model_shape(cfg.models[0].base)
    bases = sorted({m.base for m in cfg.models})
    iterations = plan_run(cfg, gpu, tokens, shape)
    per_stage = {s: sum(c.gpu_hours for it in iterations for c in it if c.stage == s) for s in GPU_STAGES}
    return {
        "cluster": {"gpu_type": gpu.name, "num_gpus": cfg.cluster.num_gpus,
                    "gpus_per_node": cfg.cluster.gpus_per_node},
        "gpu": asdict(gpu),
        "model": {"base": cfg.models[0].base, "num_bases": len(bases), **asdict(shape),
                  "params": shape.params, "matmul_params": shape.matmul_params,
                  "flops_per_token": 2 * shape.matmul_params},
        "tokens": asdict(tokens),
        "iterations": [
            {"iteration": t, "stages": {c.stage: asdict(c) for c in it},
             "gpu_hours": sum(c.gpu_hours for c in it), "wall_hours": sum(c.wall_hours for c in it)}
            for t, it in enumerate(iterations)
        ],
        "gpu_hours": per_stage,
        "total_gpu_hours": sum(per_stage.values()),
        "total_wall_hours": sum(c.wall_hours for it in iterations for c in it),
        "total_flops": sum(c.flops for it in iterations for c in it),
        "memory": memory_rows(cfg, shape, gpu),
        "notes": layout_notes(cfg),
    }  # fmt: skip


def _calibrated(gpu_type: str, calibration: dict[str, Any]) -> tuple[GPUType, TokenAssumptions]:
    """The GPU type's constants and the token assumptions, with a calibration file's values on top."""
    known = {**GPU_TYPES}
    for name, values in calibration.get("gpu_types", {}).items():
        known[name] = _with(known.get(name) or GPUType(name=name, **_required_gpu(values)), values, name)
    if gpu_type not in known:
        raise ValueError(
            f"cluster.gpu_type={gpu_type!r} is not known; known: {', '.join(sorted(known))} "
            "(add one under gpu_types in a --calibration file)"
        )
    return known[gpu_type], _with(TokenAssumptions(), calibration.get("tokens", {}), "tokens")


def _required_gpu(values: dict[str, Any]) -> dict[str, Any]:
    """The fields a new GPU type must give (those without a default)."""
    needed = [f.name for f in fields(GPUType) if f.name != "name" and f.default is MISSING]
    missing = [key for key in needed if key not in values]
    if missing:
        raise ValueError(f"calibration: a new GPU type needs {', '.join(missing)}")
    return {key: values[key] for key in needed}


def _with(obj: Any, values: dict[str, Any], where: str) -> Any:
    valid = {f.name for f in fields(obj)} - {"name"}
    unknown = sorted(set(values) - valid)
    if unknown:
        raise ValueError(f"calibration: unknown key(s) {unknown} under {where}; valid: {sorted(valid)}")
    return replace(obj, **values)


def load_calibration(path: str | None) -> dict[str, Any]:
    """A calibration JSON file (``{"gpu_types": {NAME: {...}}, "tokens": {...}}``), or nothing."""
    if path is None:
        return {}
    data = json.loads(Path(path).read_text())
    if not isinstance(data, dict) or set(data) - {"gpu_types", "tokens"}:
        raise ValueError(f"{path}: a calibration file holds only the keys gpu_types and tokens")
    return data


# ---------------------------------------------------------------- command line


def add_arguments(p: Any) -> None:
    """Arguments of ``sparta-hpc plan``."""
    p.add_argument("--config", default=None, help="YAML config (default: the tiny CPU demo)")
    p.add_argument("--json", action="store_true", help="machine-readable output")
    p.add_argument("--calibration", help="JSON file with measured GPU constants and token counts")
    p.add_argument("overrides", nargs="*", metavar="key=value", help="e.g. cluster.gpu_type=H100-80GB")


def main(args: Any) -> int:
    """Print the plan of a config; submits nothing."""
    from sparta_hpc.config import load_config
    from sparta_hpc.errors import ConfigError

    cfg = load_config(args.config, list(args.overrides))
    try:
        report = plan_report(cfg, load_calibration(args.calibration))
    except (ValueError, OSError) as e:  # unknown GPU type or model size, bad calibration file
        raise ConfigError(str(e)) from None
    from sparta_hpc.tools.time_limits import format_limits, time_limits

    report["time_limits"] = time_limits(report, {s: cfg.cluster.resources(s).timeout_min for s in GPU_STAGES})
    print(
        json.dumps(report, indent=1)
        if args.json
        else f"{format_plan(report)}\n\n{format_limits(report['time_limits'])}"
    )
    return 0


def format_plan(report: dict[str, Any]) -> str:
    """The human-readable plan: model and cluster, one row per iteration and stage, total, memory plan."""
    model, gpu, cluster = report["model"], report["gpu"], report["cluster"]
    lines = [
        f"model: {model['name']} ({model['params'] / 1e9:.2f}B parameters, {model['flops_per_token']:.3g} "
        f"FLOPs per token forward = 2 x {model['matmul_params']:.3g} matmul parameters)",
        f"cluster: {cluster['num_gpus']} x {gpu['name']} ({gpu['peak_tflops']:g} TFLOP/s bf16 peak; MFU "
        f"prefill {gpu['prefill_mfu']:g}, decode {gpu['decode_mfu']:g}, train {gpu['train_mfu']:g}; start-up "
        f"{gpu['engine_start_s']:g} s per engine task, {gpu['train_start_s']:g} s per training task)",
        "tokens are upper bounds: every response uses its whole max_new_tokens",
        "",
        f"{'iter':>4} {'stage':<9} {'jobs':>4} {'tasks':>5} {'GPUs/task':>9} {'prefill tok':>12} "
        f"{'decode tok':>11} {'train tok':>11} {'FLOPs':>9} {'GPU-h':>8} {'wall h':>7}",
    ]
    for first, last in _identical_runs(report["iterations"]):
        label = str(first) if first == last else f"{first}-{last}"
        for c in report["iterations"][first]["stages"].values():
            lines.append(
                f"{label:>4} {c['stage']:<9} {c['jobs']:>4} {c['tasks']:>5} {c['gpus_per_task']:>9} "
                f"{c['prefill_tokens']:>12,} {c['decode_tokens']:>11,} {c['train_tokens']:>11,} "
                f"{c['flops']:>9.3g} {c['gpu_hours']:>8.2f} {c['wall_hours']:>7.2f}"
                + (f"  ({c['note']})" if c["note"] else "")
            )
    if any(first != last for first, last in _identical_runs(report["iterations"])):
        lines.append("(a row for iterations a-b is the cost of EACH of them)")
    stages = ", ".join(f"{s} {h:.2f}" for s, h in report["gpu_hours"].items())
    lines += [
        "",
        f"total: {report['total_gpu_hours']:.2f} GPU-hours ({stages}); wall time "
        f"{report['total_wall_hours']:.2f} h if each stage starts when the previous ends; "
        f"{report['total_flops']:.3g} FLOPs",
        "plan and rate run in the controller (no GPU); queue waits are not counted",
        *(f"note: {note}" for note in report["notes"]),
        "",
        "memory plan (one GPU of each size; LoRA-DPO with the train section's batch and length):",
    ]
    for row in report["memory"]:
        lines.append(
            f"  {row['base']:<12} ({row['params_b']:>5.2f}B) {row['gpu_memory_gb']:>4.0f} GB  "
            f"{row['stage']:<15} {row['need_gb_one_gpu']:>6.1f} GB on one GPU: {row['verdict']}"
        )
    return "\n".join(lines)


def _identical_runs(iterations: list[dict[str, Any]]) -> list[tuple[int, int]]:
    """(first, last) of each run of consecutive iterations with identical stage costs."""
    runs: list[tuple[int, int]] = []
    for t, it in enumerate(iterations):
        if runs and iterations[runs[-1][0]]["stages"] == it["stages"]:
            runs[-1] = (runs[-1][0], t)
        else:
            runs.append((t, t))
    return runs
