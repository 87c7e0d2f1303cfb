"""The run configuration: the schema (``schema.py``) and how a config is loaded and checked (``load.py``)."""

from sparta_hpc.config.load import (
    CONFIG_DIR,
    DEFAULT_CONFIG,
    RESULT_NEUTRAL_PREFIXES,
    check_paths,
    config_hash,
    differing_keys,
    flatten,
    load_config,
    load_saved_config,
    load_section,
    result_keys,
    to_dict,
    to_yaml,
    valid_keys,
)
from sparta_hpc.config.schema import GenerateConfig, JudgeConfig, RunConfig, SpartaConfig

__all__ = [
    "CONFIG_DIR",
    "DEFAULT_CONFIG",
    "RESULT_NEUTRAL_PREFIXES",
    "GenerateConfig",
    "JudgeConfig",
    "RunConfig",
    "SpartaConfig",
    "check_paths",
    "config_hash",
    "differing_keys",
    "flatten",
    "load_config",
    "load_saved_config",
    "load_section",
    "result_keys",
    "to_dict",
    "to_yaml",
    "valid_keys",
]
