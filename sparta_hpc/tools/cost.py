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
from dataclasses import MISSING, asdict, fields, replace
from pathlib import Path
from typing import Any

from sparta_hpc.config import SpartaConfig
from sparta_hpc.tools.cost_model import GPU_TYPES, GPUType, TokenAssumptions, model_shape
from sparta_hpc.tools.cost_model import memory_plan as memory_rows
from sparta_hpc.tools.cost_stages import (
    StageCost,
    is_combat,
    plan_run,
    resources_of,
    stage_names,
    train_options,
)


def layout_notes(cfg: SpartaConfig) -> list[str]:
    """Where the config's Slurm resources and its GPU counts disagree (the plan counts what is asked)."""
    notes = []
    engine = cfg.engine.tensor_parallel_size
    logical = {"generate": engine, "judge": engine, "train": cfg.train.num_ranks, "evaluate": engine}
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


def stage_task_seconds(cfg: SpartaConfig, calibration: dict[str, Any] | None = None) -> dict[str, float]:
    """Per ``cluster`` section (generate, judge, train, evaluate), the longest task's start-up + compute
    seconds over the run's iterations: what that section's time limit must cover (a combat task runs as a
    generate task). A section with no task in any iteration is absent."""
    gpu, tokens, queue = _calibrated(cfg.cluster.gpu_type, calibration or {})
    longest: dict[str, float] = {}
    for iteration in plan_run(cfg, gpu, tokens, model_shape(cfg.models[0].base), queue):
        for c in iteration:
            if c.tasks:
                section = resources_of(c.stage)
                longest[section] = max(longest.get(section, 0.0), c.task_s)
    return longest


def _idle_notes(cfg: SpartaConfig, stages: list[StageCost]) -> list[str]:
    """Sharded stages that leave GPUs without a task, and the shard count that would use them."""
    keys = {"generate": "generate.num_shards", "combat": "generate.num_shards", "judge": "judge.num_shards"}
    return [
        f"{c.stage}: {c.tasks} tasks leave {c.idle_gpus} of {cfg.cluster.num_gpus} GPUs without a task; "
        f"{keys[c.stage]}={c.tasks + c.idle_gpus // c.gpus_per_task} would use them"
        for c in stages
        if c.stage in keys and c.tasks and c.idle_gpus >= c.gpus_per_task
    ]


def _iteration(t: int, stages: list[StageCost]) -> dict[str, Any]:
    return {
        "iteration": t, "stages": {c.stage: {**asdict(c), "task_s": c.task_s} for c in stages},
        "starts": sum(c.tasks for c in stages), "gpu_hours": sum(c.gpu_hours for c in stages),
        "startup_gpu_hours": sum(c.startup_gpu_hours for c in stages),
        "wall_hours": sum(c.wall_hours for c in stages),
        "idle_gpu_hours": sum(c.idle_gpu_hours for c in stages),
    }  # fmt: skip


def plan_report(cfg: SpartaConfig, calibration: dict[str, Any] | None = None) -> dict[str, Any]:
    """Everything ``plan`` prints, as plain data (``--json``)."""
    gpu, tokens, queue = _calibrated(cfg.cluster.gpu_type, calibration or {})
    shape = model_shape(cfg.models[0].base)
    bases = sorted({m.base for m in cfg.models})
    iterations = plan_run(cfg, gpu, tokens, shape, queue)
    everything = [c for it in iterations for c in it]

    def per_stage(key: str) -> dict[str, float]:
        return {s: sum(getattr(c, key) for c in everything if c.stage == s) for s in stage_names(cfg)}

    last = iterations[-1]
    final = [c for c in last if c.stage == "evaluate"] if is_combat(cfg) else []
    return {
        "cluster": {"gpu_type": gpu.name, "num_gpus": cfg.cluster.num_gpus,
                    "gpus_per_node": cfg.cluster.gpus_per_node},
        "stage_layout": "combat" if is_combat(cfg) else "separate",
        "stage_layout_setting": cfg.run.stage_layout,
        "queue_wait_s": queue,
        "gpu": asdict(gpu),
        "model": {"base": cfg.models[0].base, "num_bases": len(bases), **asdict(shape),
                  "params": shape.params, "matmul_params": shape.matmul_params,
                  "flops_per_token": 2 * shape.matmul_params},
        "tokens": asdict(tokens),
        "iterations": [_iteration(t, it) for t, it in enumerate(iterations)],
        "gpu_hours": per_stage("gpu_hours"),
        "startup_gpu_hours": per_stage("startup_gpu_hours"),
        "compute_gpu_hours": per_stage("compute_gpu_hours"),
        "idle_gpu_hours": per_stage("idle_gpu_hours"),
        "total_gpu_hours": sum(c.gpu_hours for c in everything),
        "total_startup_gpu_hours": sum(c.startup_gpu_hours for c in everything),
        "total_idle_gpu_hours": sum(c.idle_gpu_hours for c in everything),
        "total_wall_hours": sum(c.wall_hours for c in everything),
        "total_flops": sum(c.flops for c in everything),
        "total_starts": sum(c.tasks for c in everything),
        "final_evaluation_starts": sum(c.tasks for c in final),
        "train_options": train_options(cfg, gpu, tokens, shape),
        "memory": memory_rows(cfg, shape, gpu),
        "notes": layout_notes(cfg) + _idle_notes(cfg, iterations[0]),
    }  # fmt: skip


def _calibrated(gpu_type: str, calibration: dict[str, Any]) -> tuple[GPUType, TokenAssumptions, float]:
    """The GPU type's constants, the token assumptions and the queue wait per stage (seconds), with a
    calibration file's values on top."""
    known = {**GPU_TYPES}
    for name, values in calibration.get("gpu_types", {}).items():
        known[name] = _with(known.get(name) or GPUType(name=name, **_required_gpu(values)), values, name)
    if gpu_type not in known:
        raise ValueError(
            f"cluster.gpu_type={gpu_type!r} is not known; known: {', '.join(sorted(known))} "
            "(add one under gpu_types in a --calibration file)"
        )
    queue = calibration.get("queue_wait_s", 0.0)
    if not isinstance(queue, int | float) or isinstance(queue, bool) or queue < 0:
        raise ValueError(f"calibration: queue_wait_s={queue!r} must be a number of seconds >= 0")
    return known[gpu_type], _with(TokenAssumptions(), calibration.get("tokens", {}), "tokens"), float(queue)


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
    """A calibration JSON file (``{"gpu_types": {NAME: {...}}, "tokens": {...}, "queue_wait_s": S}``), or
    nothing."""
    if path is None:
        return {}
    data = json.loads(Path(path).read_text())
    if not isinstance(data, dict) or set(data) - {"gpu_types", "tokens", "queue_wait_s"}:
        raise ValueError(f"{path}: a calibration file holds only the keys gpu_types, tokens and queue_wait_s")
    return data


# ---------------------------------------------------------------- command line


def add_arguments(p: Any) -> None:
    """Arguments of ``sparta-hpc plan``."""
    p.add_argument("--config", default=None, help="YAML config (default: the tiny CPU demo)")
    p.add_argument(
        "--cluster-preset",
        metavar="NAME",
        help="resources preset configs/cluster/NAME.yaml (or cluster=NAME)",
    )
    p.add_argument("--json", action="store_true", help="machine-readable output")
    p.add_argument("--calibration", help="JSON file with measured GPU constants, token counts, queue wait")
    p.add_argument(
        "--queue-wait-s",
        type=float,
        default=None,
        metavar="S",
        help="seconds every stage waits in the queue before its tasks start (default 0)",
    )
    p.add_argument("overrides", nargs="*", metavar="key=value", help="e.g. cluster.gpu_type=H100-80GB")


def main(args: Any) -> int:
    """Print the plan of a config; submits nothing."""
    from sparta_hpc.config import load_config
    from sparta_hpc.errors import ConfigError

    cfg = load_config(args.config, list(args.overrides), args.cluster_preset)
    try:
        calibration = load_calibration(args.calibration)
        if args.queue_wait_s is not None:
            calibration["queue_wait_s"] = args.queue_wait_s
        report = plan_report(cfg, calibration)
    except (ValueError, OSError) as e:  # unknown GPU type or model size, bad calibration file
        raise ConfigError(str(e)) from None
    print(json.dumps(report, indent=1) if args.json else format_plan(report))
    return 0


def format_plan(report: dict[str, Any]) -> str:
    """The human-readable plan: model and cluster, one row per iteration and stage, totals, train-stage
    options, memory plan."""
    model, gpu, cluster = report["model"], report["gpu"], report["cluster"]
    lines = [
        f"model: {model['name']} ({model['params'] / 1e9:.2f}B parameters, {model['flops_per_token']:.3g} "
        f"FLOPs per token forward = 2 x {model['matmul_params']:.3g} matmul parameters)",
        f"cluster: {cluster['num_gpus']} x {gpu['name']} ({gpu['peak_tflops']:g} TFLOP/s bf16 peak; MFU "
        f"prefill {gpu['prefill_mfu']:g}, decode {gpu['decode_mfu']:g} at {gpu['decode_batch']} sequences, "
        f"train {gpu['train_mfu']:g}; start-up {gpu['engine_start_s']:g} s per engine task, "
        f"{gpu['train_start_s']:g} s per training task; queue wait {report['queue_wait_s']:g} s per stage)",
        f"stage layout: {report['stage_layout']} (run.stage_layout={report['stage_layout_setting']}); "
        "tokens are upper bounds: every response "
        "uses its whole max_new_tokens",
        "",
        f"{'iter':>4} {'stage':<9} {'jobs':>4} {'tasks':>5} {'GPUs/task':>9} {'prefill tok':>12} "
        f"{'decode tok':>11} {'train tok':>11} {'FLOPs':>9} {'GPU-h':>8} {'wall h':>7} {'start-up h':>10} "
        f"{'compute h':>9} "
        f"{'batch':>5} {'idle GPUs':>9} {'idle GPU-h':>10}",
    ]
    runs = _identical_runs(report["iterations"])
    for first, last in runs:
        label = str(first) if first == last else f"{first}-{last}"
        for c in report["iterations"][first]["stages"].values():
            lines.append(
                f"{label:>4} {c['stage']:<9} {c['jobs']:>4} {c['tasks']:>5} {c['gpus_per_task']:>9} "
                f"{c['prefill_tokens']:>12,} {c['decode_tokens']:>11,} {c['train_tokens']:>11,} "
                f"{c['flops']:>9.3g} {c['gpu_hours']:>8.2f} {c['wall_hours']:>7.2f} "
                f"{c['startup_gpu_hours']:>10.2f} {c['compute_gpu_hours']:>9.2f} "
                f"{c['decode_batch'] or '-':>5} {c['idle_gpus']:>9} "
                f"{c['idle_gpu_hours']:>10.2f}" + (f"  ({c['note']})" if c["note"] else "")
            )
    if any(first != last for first, last in runs):
        lines.append("(a row for iterations a-b is the cost of EACH of them)")
    stages = ", ".join(f"{s} {h:.2f}" for s, h in report["gpu_hours"].items())
    starts = ", ".join(
        f"{first}: {report['iterations'][first]['starts']}" if first == last
        else f"{first}-{last}: {report['iterations'][first]['starts']} each" for first, last in runs
    )  # fmt: skip
    final = report["final_evaluation_starts"]
    lines += [
        "",
        f"total: {report['total_gpu_hours']:.2f} GPU-hours ({stages}), of which start-up "
        f"{report['total_startup_gpu_hours']:.2f}; wall time {report['total_wall_hours']:.2f} h if each "
        f"stage starts when the previous ends; {report['total_flops']:.3g} FLOPs",
        f"model starts (engines and trainers): {report['total_starts']} ({starts} by iteration"
        + (f"; {final} of them the last iteration's evaluation" if final else "")
        + ")",
        f"idle: {report['total_idle_gpu_hours']:.2f} GPU-hours of the {cluster['num_gpus']} GPUs have no "
        "task while a stage runs (not in the total); plan and rate run in the controller (no GPU)",
        *(f"note: {note}" for note in report["notes"]),
        "",
        "train stage on the cluster (docs/plan.md#the-train-stage):",
    ]
    for row in report["train_options"]:
        lines.append(
            f"  {row['layout']:<32} {row['starts']:>3} starts {row['wall_s'] / 60:>6.1f} min "
            f"{row['gpu_hours']:>6.2f} GPU-h held by tasks "
            f"{row['cluster_gpu_hours']:>6.2f} GPU-h of the cluster"
            + ("  (changes the effective batch)" if row["changes_results"] else "")
        )
    lines += ["", "memory plan (one GPU of each size; LoRA-DPO with the train section's batch and length):"]
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
