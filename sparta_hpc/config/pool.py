"""Loading the config of ``sparta-hpc build-pool``: schema <- YAML file <- ``key=value`` overrides, checked
all at once (keys, experts' data, the base) before any training starts."""

from __future__ import annotations

from dataclasses import fields
from pathlib import Path
from typing import Any

from omegaconf import OmegaConf
from omegaconf.errors import OmegaConfBaseException

from sparta_hpc.config.load import _first_line, _read_yaml
from sparta_hpc.config.overrides import apply_indexed, did_you_mean, parse_overrides
from sparta_hpc.engines.base import TINY
from sparta_hpc.engines.sources import source_problems
from sparta_hpc.errors import ConfigError
from sparta_hpc.training.sft import ExpertConfig, PoolConfig, config_problems

POOL_KEYS = tuple(f.name for f in fields(PoolConfig))


def load_pool_config(path: str | Path, overrides: list[str] | None = None) -> PoolConfig:
    """The pool config of ``path`` with ``overrides``; every problem is named in one ConfigError."""
    cli, indexed = parse_overrides(overrides or [])
    layers = [(str(path), _read_yaml(Path(path))), ("command line", cli)]
    merged = OmegaConf.structured(PoolConfig)
    for origin, layer in layers:
        unknown = [k for k in layer if k not in POOL_KEYS]
        if unknown:
            valid = ", ".join(POOL_KEYS)
            names = ", ".join(f"{k!r}{did_you_mean(str(k), POOL_KEYS)}" for k in unknown)
            raise ConfigError(f"{origin}: unknown key(s) {names}; valid keys: {valid}")
        for i, expert in enumerate(layer.get("experts") or []):
            extra = [k for k in expert if k not in ("name", "data")] if OmegaConf.is_dict(expert) else []
            if not OmegaConf.is_dict(expert) or extra:
                raise ConfigError(f"{origin}: experts[{i}] must be a mapping {{name, data}}")
        try:
            merged = OmegaConf.merge(merged, layer)
        except OmegaConfBaseException as e:
            raise ConfigError(f"{origin}: {getattr(e, 'full_key', '')}: {_first_line(e)}") from None
    merged = apply_indexed(merged, indexed, POOL_KEYS)
    missing = [k for k in ("base", "out") if OmegaConf.is_missing(merged, k)]
    missing += [
        f"experts[{i}].{k}" for i, e in enumerate(merged.experts) for k in ("name", "data")
        if OmegaConf.is_missing(e, k)
    ]  # fmt: skip
    if missing:
        raise ConfigError(f"{path}: missing {', '.join(missing)}")
    try:
        cfg: Any = OmegaConf.to_object(merged)
    except (OmegaConfBaseException, ValueError) as e:
        raise ConfigError(f"{path}: {_first_line(e)}") from None
    assert isinstance(cfg, PoolConfig)
    cfg.experts = [ExpertConfig(**vars(e)) if not isinstance(e, ExpertConfig) else e for e in cfg.experts]
    base = ["not a model directory (build-pool trains on a real base)"] if cfg.base == TINY else []
    base += source_problems(cfg.base)
    problems = [f"base={cfg.base!r}: {p}" for p in base] + config_problems(cfg)
    if problems:
        raise ConfigError(f"{path}: {len(problems)} problem(s): " + "; ".join(problems))
    return cfg
