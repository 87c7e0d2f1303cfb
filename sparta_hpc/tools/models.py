"""``sparta-hpc models fetch|check``: put a config's models where jobs find them offline, and check them.

``fetch`` runs where the hub is reachable (a login node): it downloads every hub id into the Hugging Face
cache and converts every GGUF file into the model cache, then checks the config as ``run`` does. ``check``
downloads and converts nothing: it reports every model that jobs could not load, all at once.
"""

from __future__ import annotations

import argparse

from sparta_hpc.config import DEFAULT_CONFIG, SpartaConfig, check_paths, load_config
from sparta_hpc.engines.base import ModelConfig
from sparta_hpc.engines.sources import checked_dir, convert_gguf, hub_snapshot, source_kind

EPILOG = (
    "A base is a local directory, a hub id (org/name; jobs read it from the local Hugging Face cache, "
    "HF_HOME / HF_HUB_CACHE), a .gguf file (converted once into $SPARTA_MODEL_CACHE, default "
    "~/.cache/sparta-hpc/models) or tiny. On a cluster whose compute nodes have no internet, run "
    "`models fetch` on the login node with the same HF_HOME and SPARTA_MODEL_CACHE (on a shared file system) "
    "as the jobs."
)


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "action", choices=("fetch", "check"), help="fetch: download/convert, then check; check: only"
    )
    p.add_argument("--config", default=str(DEFAULT_CONFIG), help="YAML config (default: the tiny CPU demo)")
    p.add_argument("overrides", nargs="*", metavar="key=value")
    p.epilog = EPILOG


def config_models(cfg: SpartaConfig) -> list[ModelConfig]:
    """The players and, where it is used, the evaluation judge."""
    judge = cfg.eval.judge_model
    return [*cfg.models, *([judge] if judge is not None and cfg.eval.every else [])]


def fetch(cfg: SpartaConfig) -> list[str]:
    """Download every hub base and convert every GGUF base once; one line per distinct base."""
    lines = []
    for base in dict.fromkeys(m.base for m in config_models(cfg)):
        kind = source_kind(base)
        if kind == "hub":
            lines.append(f"{base}: hub id, in the cache at {hub_snapshot(base, download=True)}")
        elif kind == "gguf":
            lines.append(f"{base}: GGUF file, converted at {convert_gguf(base)}")
    return lines


def describe(cfg: SpartaConfig) -> list[str]:
    """Where each model's base comes from and the directory jobs load."""
    lines = []
    for m in config_models(cfg):
        kind = source_kind(m.base)
        where = checked_dir(m.base)
        if kind == "gguf" and where is None:
            where = "not converted yet (the plan job converts it; `models fetch` does it now)"
        adapter = m.adapter if m.adapter is not None else "none (the bare base)"
        lines.append(f"{m.name}: {kind} {m.base} -> {where}; adapter: {adapter}")
    return lines


def main(args: argparse.Namespace) -> int:
    cfg = load_config(args.config, args.overrides)
    if args.action == "fetch":
        for line in fetch(cfg):
            print(line)
    check_paths(cfg)
    for line in describe(cfg):
        print(line)
    print(f"models ok: {len(config_models(cfg))} models of {args.config} can be loaded offline")
    return 0
