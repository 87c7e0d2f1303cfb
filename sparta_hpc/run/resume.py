"""Opening a run: save the config (refusing one that computes something else), load or create the state, and
forget every stage whose outputs are missing or changed, so that running again redoes exactly those."""

from __future__ import annotations

import itertools
import shutil
from collections.abc import Callable

from sparta_hpc.config import (
    SpartaConfig,
    config_hash,
    differing_keys,
    load_saved_config,
    result_keys,
    to_yaml,
)
from sparta_hpc.errors import ConfigChanged
from sparta_hpc.files import atomic_write_text
from sparta_hpc.run.inputs import own_paths, players_after, rating_history, ratings_at_start
from sparta_hpc.store.models import read_models, stored
from sparta_hpc.store.rundir import STAGES, RunDir
from sparta_hpc.store.state import (
    RunState,
    first_invalid_stage,
    load_state,
    save_state,
)

Log = Callable[[str], None]


def check_resumable(cfg: SpartaConfig, run: RunDir, force: bool) -> None:
    """Refuse, reading only, to continue a run directory that was started with a config computing something
    else (ConfigChanged, unless ``force``) or whose saved config or state cannot be read; a new directory
    passes. The launcher calls it before it takes the lock, so a refusal writes nothing there."""
    if run.config_file.exists():
        old = load_saved_config(run.config_file)
        changed = differing_keys(result_keys(old), result_keys(cfg))
        if changed and not force:
            raise ConfigChanged(
                f"{run.root} was started with another config; these keys differ: {', '.join(changed)}. "
                "Use a new run directory, or --force to continue with the new values."
            )
    load_state(run)


def open_state(cfg: SpartaConfig, run: RunDir, force: bool, log: Log) -> RunState:
    """Save the config, load or create the state, and forget any stage whose outputs changed."""
    digest = config_hash(cfg)
    check_resumable(cfg, run, force)
    atomic_write_text(run.config_file, to_yaml(cfg))
    state = load_state(run) or RunState(config_hash=digest, iterations_total=cfg.run.iterations)
    state.config_hash = digest
    state.iterations_total = cfg.run.iterations
    invalid = first_invalid_stage(run, state)
    if invalid is not None:
        t, stage = invalid
        log(f"[iter {t}] {stage}: outputs are missing or changed since they were recorded; redoing from here")
        state.invalidate(t, stage)
        state.iteration = min(state.iteration, t)
        remove_outputs_from(run, t, stage)
    sync_summary(state, cfg, run)
    save_state(run, state)
    return state


def remove_outputs_from(run: RunDir, t: int, stage: str) -> None:
    """Delete the outputs of ``stage`` of iteration t and of everything after it, so none is trusted again."""
    for u in itertools.count(t):
        if not run.iteration(u).exists():
            break
        for s in STAGES[STAGES.index(stage) if u == t else 0 :]:
            shutil.rmtree(run.stage(u, s), ignore_errors=True)
            shutil.rmtree(run.progress_dir(u, s), ignore_errors=True)  # describes what was just removed


def sync_summary(state: RunState, cfg: SpartaConfig, run: RunDir) -> None:
    """Ratings, their history and adapters after the last committed iteration, read from its records."""
    t = state.iteration
    state.ratings = {p: r.to_dict() for p, r in ratings_at_start(t, cfg, run).items()}
    state.rating_history = rating_history(run, t)
    players_file = run.players(0)
    if t > 0:
        players = players_after(t - 1, cfg, run)
    elif players_file.exists():
        players = read_models(run, players_file, own_paths(cfg))
    else:
        return
    state.adapters = {p: stored(run, spec["adapter"]) for p, spec in players.items()}  # relocatable
