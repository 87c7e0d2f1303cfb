"""Loading a config: schema defaults <- profile preset <- YAML file <- cluster preset <- ``key=value``
overrides, validated before any work starts; then the resolved YAML, the config hash and path checks.
"""

from __future__ import annotations

import hashlib
import io
import json
from collections.abc import Sequence
from dataclasses import fields, is_dataclass
from pathlib import Path
from typing import Any

import yaml
from omegaconf import OmegaConf
from omegaconf.errors import OmegaConfBaseException

from sparta_hpc.cluster.resources import check_preset, check_resource_keys, preset_path, split_preset
from sparta_hpc.config.overrides import apply_indexed, did_you_mean, parse_overrides, yaml_problem
from sparta_hpc.config.schema import SpartaConfig
from sparta_hpc.engines.base import TINY, ModelConfig, adapter_problems
from sparta_hpc.engines.sources import checked_dir, source_problems
from sparta_hpc.errors import ConfigError
from sparta_hpc.method.settings import PROFILES
from sparta_hpc.tasks.own import read_rubric, task_file_keys

CONFIG_DIR = Path(__file__).resolve().parents[2] / "configs"
DEFAULT_CONFIG = CONFIG_DIR / "debug.yaml"

RESULT_NEUTRAL_PREFIXES = (
    "cluster.",
    "run.iterations",
    "run.name",
    "run.tensorboard",
    "eval.units_per_task",
    "train.wandb",
)
"""Keys that never change what a run computes: they may differ when a run is resumed."""


def valid_keys(cls: type = SpartaConfig, prefix: str = "") -> list[str]:
    """Every dotted key of the schema (``models`` is one key: a list)."""
    keys: list[str] = []
    for f in fields(cls):
        sub = f.default_factory() if callable(f.default_factory) else None
        if sub is not None and is_dataclass(sub):
            keys += valid_keys(type(sub), f"{prefix}{f.name}.")
        else:
            keys.append(prefix + f.name)
    return keys


SAVED_BEFORE_KEY: dict[str, Any] = {
    "judge.rubric": "released",
    "plan.schedule": "resample",
    "plan.pairing": "reputation",
    "rate.aggregation": "reputation",
    "train.max_prompt_tokens": None,
    "eval.tasks": [],
    "run.mode": "sparta",
    "run.stage_layout": "separate",
}
"""What a run directory's saved config meant by a key it lacks: the behaviour of the versions before the key
existed (the old judge wording, a new schedule each iteration, no prompt cap, ...), never today's default,
so that resuming an older run either continues it unchanged or names the key that would change it."""
REMOVED_KEYS: dict[str, tuple[Any, str]] = {
    "engine.trust_remote_code": (False, "models[].trust_remote_code (per model entry)"),
}
"""Keys older configs may hold: ``{key: (the value that may be dropped, where the setting lives now)}``."""


def load_saved_config(path: str | Path) -> SpartaConfig:
    """The config a run directory was started with (``RUN_DIR/config.yaml``), read as that version meant it:
    keys added since take ``SAVED_BEFORE_KEY``, and removed keys are dropped when they held their default."""
    return load_config(path, saved=True)


def load_config(
    path: str | Path | None = None,
    overrides: list[str] | None = None,
    preset: str | None = None,
    *,
    saved: bool = False,
) -> SpartaConfig:
    """Merge schema <- profile <- YAML file <- cluster preset <- overrides and validate; errors name the file
    or key. The cluster preset (``configs/cluster/NAME.yaml``) is ``preset`` or an override ``cluster=NAME``.
    ``saved``: the file is a run directory's saved config (``load_saved_config``).
    """
    path = Path(path) if path is not None else DEFAULT_CONFIG
    user = _read_yaml(path)
    if saved:
        user = _as_saved(user, path)
    layers = [(f"{path}", user)]
    try:
        overrides, preset = split_preset(overrides or [], preset)
        if preset is not None:
            layers.append(_read_preset(preset))
        cli, indexed = parse_overrides(overrides)
        layers.append(("command line", cli))
        check_resource_keys(layers)
    except ValueError as e:
        raise ConfigError(str(e)) from None
    schema = OmegaConf.structured(SpartaConfig)
    shapes = [f"{origin}: {p}" for origin, layer in layers for p in _shape_problems(layer, schema)]
    if shapes:
        raise ConfigError("; ".join(shapes))
    try:
        profile = OmegaConf.select(OmegaConf.merge(user, cli), "run.profile", default="paper")
    except (TypeError, OmegaConfBaseException) as e:  # shapes are checked above; never a raw traceback
        raise ConfigError(f"{path} with the command line: {_first_line(e)}") from None
    if not isinstance(profile, str) or profile not in PROFILES:
        raise ConfigError(f"run.profile={profile!r} is not valid; allowed values: {', '.join(PROFILES)}")
    try:
        merged = OmegaConf.merge(schema, _profile_preset(profile))
        for origin, layer in layers:
            merged = _merge(merged, layer, origin)
        merged = apply_indexed(merged, indexed, valid_keys())
        given = OmegaConf.to_container(merged.task)
        assert isinstance(given, dict)
        merged.task.merge_with(task_file_keys(merged.task.name, merged.task.data_dir, given))
        _check_models_complete(merged)
        cfg = OmegaConf.to_object(merged)
    except ConfigError:
        raise
    except OmegaConfBaseException as e:
        raise ConfigError(f"{path}: {_first_line(e)}") from None
    except ValueError as e:
        raise ConfigError(str(e)) from None
    assert isinstance(cfg, SpartaConfig)
    return cfg


def load_section(section: str, profile: str, overrides: Sequence[str] = ()) -> Any:
    """One section of the schema (``rate``, ``plan`` ...) as its dataclass: schema defaults <- the profile's
    presets <- ``section.key=value`` overrides, merged and checked as in ``load_config`` (no YAML file, no
    cross-section checks). A bad key or value raises ConfigError with its ``key``."""
    try:
        merged = OmegaConf.merge(OmegaConf.structured(SpartaConfig), _profile_preset(profile))
        cli, indexed = parse_overrides(overrides)
        merged = apply_indexed(_merge(merged, cli, "command line"), indexed, valid_keys())
        return OmegaConf.to_object(merged[section])
    except ConfigError:
        raise
    except ValueError as e:
        raise ConfigError(str(e)) from None


def _profile_preset(profile: str) -> Any:
    return OmegaConf.from_dotlist([f"{k}={_dot_value(v)}" for k, v in PROFILES[profile].items()])


def _read_preset(name: str) -> tuple[str, Any]:
    path = preset_path(name)
    node = _read_yaml(path)
    check_preset(path, node)
    return f"{path}", node


def _dot_value(v: Any) -> str:
    return "null" if v is None else str(v).lower() if isinstance(v, bool) else str(v)


def _as_saved(node: Any, path: Path) -> Any:
    """A saved config with the keys added since it was written filled in as its version meant them."""
    missing = object()
    for key, (harmless, now) in REMOVED_KEYS.items():
        value = OmegaConf.select(node, key, default=missing)
        if value is missing:
            continue
        if value != harmless:
            raise ConfigError(f"{path}: {key}={value!r} is no longer a key; set {now} instead")
        section, _, name = key.rpartition(".")
        del OmegaConf.select(node, section)[name]
    for key, value in SAVED_BEFORE_KEY.items():
        if OmegaConf.select(node, key, default=missing) is missing:
            OmegaConf.update(node, key, value, force_add=True)
    return node


def _read_yaml(path: Path) -> Any:
    """A YAML file whose top level is a mapping; every error names the file (and the line where known)."""
    if not path.is_file():
        raise ConfigError(f"config file {path} does not exist")
    try:
        raw = path.read_bytes()
    except OSError as e:
        raise ConfigError(f"{path}: cannot read: {e.strerror or e}") from None
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as e:
        line = raw[: e.start].count(b"\n") + 1
        raise ConfigError(f"{path}:{line}: not valid UTF-8 (byte 0x{raw[e.start]:02x})") from None
    try:
        root = yaml.compose(text, Loader=yaml.SafeLoader)
        if root is None:
            return OmegaConf.create()
        if not isinstance(root, yaml.MappingNode):
            kind = "a list" if isinstance(root, yaml.SequenceNode) else "a single value"
            line = root.start_mark.line + 1
            raise ConfigError(f"{path}:{line}: the top level must be a mapping of sections, not {kind}")
        return OmegaConf.load(io.StringIO(text))
    except yaml.YAMLError as e:
        at, problem = yaml_problem(e)
        raise ConfigError(f"{path}{'' if at is None else f':{at}'}: not valid YAML: {problem}") from None
    except ConfigError:
        raise
    except Exception as e:  # OmegaConf's own refusals (e.g. too many alias expansions)
        raise ConfigError(f"{path}: not a valid config: {_first_line(e)}") from None


def _shape_problems(layer: Any, schema: Any, prefix: str = "") -> list[str]:
    """Values of a layer that cannot merge into the schema, each named by its key: a scalar where the schema
    has a section, anything but a list of ``{name, base, adapter}`` mappings for ``models``, an unknown key of
    a model (unknown keys elsewhere are named by the merge)."""
    problems: list[str] = []
    for key in layer:
        if key not in schema:
            continue
        value, sub, name = layer[key], schema[key], f"{prefix}{key}"
        if name == "models":
            problems += _models_problems(value)
        elif name == "eval.judge_model" and value is not None:
            problems += _model_problems(name, value)
        elif OmegaConf.is_dict(sub) and not OmegaConf.is_dict(value):
            problems.append(f"{name} must be a section (a mapping of keys), got {_kind(value)}")
        elif OmegaConf.is_dict(sub) and sub:
            problems += _shape_problems(value, sub, f"{name}.")
        elif OmegaConf.is_list(sub) and not OmegaConf.is_list(value):
            problems.append(f"{name} must be a list, got {_kind(value)}")
    return problems


def _models_problems(value: Any) -> list[str]:
    if not OmegaConf.is_list(value):
        return [
            f"models must be a list of {{name, base, adapter}}, got {_kind(value)} "
            "(on the command line, give the whole list: models=[{name: a, base: tiny}, ...])"
        ]
    return [p for i, m in enumerate(value) for p in _model_problems(f"models[{i}]", m)]


MODEL_KEYS = tuple(f.name for f in fields(ModelConfig))


def _model_problems(name: str, value: Any) -> list[str]:
    if not OmegaConf.is_dict(value):
        return [f"{name} must be a mapping {{name, base, adapter}}, got {_kind(value)}"]
    return [
        f"unknown key '{name}.{k}'{did_you_mean(str(k), MODEL_KEYS)}; valid keys of a model: "
        + ", ".join(MODEL_KEYS)
        for k in value
        if k not in MODEL_KEYS
    ]


def _kind(value: Any) -> str:
    if OmegaConf.is_dict(value):
        return "a mapping"
    if OmegaConf.is_list(value):
        return "a list"
    return f"{value!r}"


def _check_models_complete(merged: Any) -> None:
    """Every model names its ``name`` and ``base`` (the schema has no default for them)."""
    models = [(f"models[{i}]", m) for i, m in enumerate(merged.models)]
    if merged.eval.judge_model is not None:
        models.append(("eval.judge_model", merged.eval.judge_model))
    missing = [f"{name}.{k}" for name, m in models for k in ("name", "base") if OmegaConf.is_missing(m, k)]
    if missing:
        raise ConfigError(
            f"missing {', '.join(missing)}: every model needs a name and a base "
            "(a directory, a hub id, a .gguf file or tiny)"
        )


def _merge(base: Any, other: Any, origin: str) -> Any:
    try:
        return OmegaConf.merge(base, other)
    except TypeError as e:  # a container where the schema has another kind (not caught by _shape_problems)
        raise ConfigError(f"{origin}: {e}") from None
    except OmegaConfBaseException as e:
        key = getattr(e, "full_key", None)
        msg = _first_line(e)
        if "not in" in msg or "Key" in msg and "not" in msg:
            section = key.rsplit(".", 1)[0] if key and "." in key else ""
            valid = [k for k in valid_keys() if k.startswith(section + ".")] if section else valid_keys()
            hint = did_you_mean(str(key), valid_keys())
            raise ConfigError(
                f"{origin}: unknown key {key!r}{hint}; valid keys: {', '.join(valid)}", key
            ) from None
        raise ConfigError(f"{origin}: {key}: {msg}", key) from None


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
    """Every path the run will read exists and is what its key says, reported all at once in one ConfigError
    that names each bad key: model bases (a folder with ``config.json``, a hub id in the local Hugging Face
    cache, a GGUF file; ``engines/sources.py``) and LoRA adapters (of that base),
    the task's data folder and the split files the run reads, a DeepSpeed JSON. Cheap: no weights are read.
    """
    problems: list[str] = []
    for i, m in enumerate(cfg.models):
        problems += _model_path_problems(f"models[{i}]", m, f" ({m.name})")
    extra = [name for name in (cfg.eval.tasks if cfg.eval.every else []) if name != "synthetic"]
    if cfg.task.name != "synthetic" or extra:
        problems += _task_path_problems(cfg, extra)
    judge = cfg.eval.judge_model
    judged = "alpaca" in (cfg.task.name, *cfg.eval.tasks) or cfg.task.metric == "judge"
    judged_rubric = cfg.eval.judge_rubric_file if cfg.eval.every and judged else None
    if cfg.eval.every and judged and judge is not None:
        problems += _model_path_problems("eval.judge_model", judge, "")
    for key, rubric in (
        ("judge.rubric_file", cfg.judge.rubric_file),
        ("eval.judge_rubric_file", judged_rubric),
    ):
        try:
            read_rubric(rubric, key)
        except ConfigError as e:
            problems.append(str(e))
    deepspeed = cfg.train.deepspeed_config
    if deepspeed is not None and not Path(deepspeed).is_file():
        problems.append(f"train.deepspeed={cfg.train.deepspeed!r}: path does not exist")
    if len(problems) == 1:
        raise ConfigError(problems[0])
    if problems:
        raise ConfigError(f"{len(problems)} bad paths: " + "; ".join(problems))


def _model_path_problems(key: str, m: ModelConfig, label: str) -> list[str]:
    base_bad = [f"{key}.base={m.base!r}{label}: {p}" for p in source_problems(m.base)]
    # An adapter is compared with its base's config.json where the base's folder exists already (not for a
    # GGUF file converted later, nor a bad base, whose problem is reported on its own key).
    base_dir = checked_dir(m.base) if not base_bad else None
    return base_bad + [
        f"{key}.adapter={m.adapter!r}{label}: {p}"
        for p in adapter_problems(m.adapter, base_dir if base_dir is not None else TINY)
    ]


def _task_path_problems(cfg: SpartaConfig, extra: list[str]) -> list[str]:
    """The split files of the training task (unless synthetic) and of each non-synthetic ``eval.tasks``."""
    task = cfg.task
    if task.data_dir is None:
        what = f"task.name={task.name!r}" if task.name != "synthetic" else f"eval.tasks={extra}"
        return [f"task.data_dir is required for {what} (a folder written by prepare-data)"]
    if not Path(task.data_dir).is_dir():
        return [f"task.data_dir={task.data_dir!r}: folder does not exist (run prepare-data)"]
    problems = []
    eval_splits = cfg.eval.splits if cfg.eval.every else []
    files = [(task.name, s) for s in ["train", *eval_splits] if task.name != "synthetic"]
    for name, split in files + [(name, s) for name in extra for s in eval_splits]:
        path = Path(task.data_dir) / name / f"{split}.jsonl"
        if path.exists() and not path.is_file():
            problems.append(f"task.data_dir={task.data_dir!r}: {path} is not a file")
        elif not path.exists():
            problems.append(f"task.data_dir={task.data_dir!r}: {path} does not exist (run prepare-data)")
    return problems
