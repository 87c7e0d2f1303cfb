"""Loading a config: schema defaults <- profile preset <- YAML file <- cluster preset <- ``key=value``
overrides, validated before any work starts; then the resolved YAML, the config hash and path checks.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Sequence
from dataclasses import fields, is_dataclass
from pathlib import Path
from typing import Any

from omegaconf import OmegaConf
from omegaconf.errors import OmegaConfBaseException

from sparta_hpc.cluster.resources import check_preset, check_resource_keys, preset_path, split_preset
from sparta_hpc.config.schema import SpartaConfig
from sparta_hpc.engines.base import TINY
from sparta_hpc.errors import ConfigError
from sparta_hpc.method.settings import PROFILES

CONFIG_DIR = Path(__file__).resolve().parents[2] / "configs"
DEFAULT_CONFIG = CONFIG_DIR / "debug.yaml"

RESULT_NEUTRAL_PREFIXES = ("cluster.", "run.iterations", "run.name", "run.tensorboard", "eval.units_per_task")
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
    schema = OmegaConf.structured(SpartaConfig)
    try:
        merged = OmegaConf.merge(schema, _profile_preset(profile))
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


def load_section(section: str, profile: str, overrides: Sequence[str] = ()) -> Any:
    """One section of the schema (``rate``, ``plan`` ...) as its dataclass: schema defaults <- the profile's
    presets <- ``section.key=value`` overrides, merged and checked as in ``load_config`` (no YAML file, no
    cross-section checks). A bad key or value raises ConfigError with its ``key``."""
    try:
        merged = OmegaConf.merge(OmegaConf.structured(SpartaConfig), _profile_preset(profile))
        merged = _merge(merged, _parse_overrides(list(overrides)), "command line")
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
            raise ConfigError(f"{origin}: unknown key {key!r}; valid keys: {', '.join(valid)}", key) from None
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
