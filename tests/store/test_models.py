"""Model paths in a run's records: relative inside the run directory, re-rooted when an old run (absolute
paths) was moved or copied, the user's own paths kept as they are."""

from __future__ import annotations

import json
from pathlib import Path

from sparta_hpc.store.models import located, players_after, read_models, stored, stored_models
from sparta_hpc.store.rundir import RunDir


def test_paths_inside_the_run_are_stored_relative_and_read_back_absolute(tmp_path: Path) -> None:
    run = RunDir(tmp_path / "run")
    inside = {"base": str(run.tiny_base), "adapter": str(run.adapter(3, "p"))}
    user = {"base": "/data/llama", "adapter": None}
    hub = {"base": "HuggingFaceTB/SmolLM2-135M", "adapter": "models/other"}  # relative: not the run's
    models = stored_models(run, {"a": inside, "b": user, "c": hub})
    assert models == {
        "a": {"base": "models/tiny-base", "adapter": "iter_003/train/p/adapter"},
        "b": user,
        "c": hub,
    }
    assert {n: {k: located(run, v) for k, v in m.items()} for n, m in models.items()} == {
        "a": inside,
        "b": user,
        "c": hub,
    }
    assert stored(run, run.root / "notes" / "x") == str(run.root / "notes" / "x")  # not a model of the run


def test_an_old_runs_absolute_paths_are_re_rooted_in_its_copy(tmp_path: Path) -> None:
    old, run = tmp_path / "old", RunDir(tmp_path / "copy")
    players = {
        "a": {"base": f"{old}/models/tiny-base", "adapter": f"{old}/models/initial/a"},
        "b": {"base": "/data/llama", "adapter": f"{old}/iter_001/train/b/adapter"},
        "c": {"base": "/data/llama", "adapter": "/elsewhere/iter_004/train/x/adapter"},  # the config names it
    }
    run.players(2).parent.mkdir(parents=True)
    run.players(2).write_text(json.dumps(players))
    keep = {"/data/llama", "/elsewhere/iter_004/train/x/adapter"}
    assert read_models(run, run.players(2), keep) == {
        "a": {"base": str(run.tiny_base), "adapter": str(run.initial_adapter("a"))},
        "b": {"base": "/data/llama", "adapter": str(run.adapter(1, "b"))},
        "c": players["c"],
    }
    run.rate_report(2).parent.mkdir(parents=True)
    run.rate_report(2).write_text(json.dumps({"num_pairs": 3, "pairs_per_player": {"a": 1, "b": 0, "c": 2}}))
    after = players_after(2, run, keep)
    assert [after[p]["adapter"] for p in "ac"] == [str(run.adapter(2, p)) for p in "ac"]
    assert after["b"]["adapter"] == str(run.adapter(1, "b"))  # untrained: keeps its adapter, re-rooted
