"""``sparta-hpc export``: each player's adapter of one iteration as a standard PEFT folder with a model card,
optionally merged into its base (full safetensors weights), for use outside sparta-hpc.

``OUT/<player>/`` holds ``adapter_config.json`` and ``adapter_model.safetensors`` (load them with
``PeftModel.from_pretrained``), the base's tokenizer, ``README.md`` (the model card: ratings, evaluation, the
iteration and why it was chosen, the config) and ``sparta.json`` (the same facts for programs); with
``--merge`` also ``merged/`` (the base with the adapter merged in: ``AutoModelForCausalLM.from_pretrained``).
A base that the run built itself (the tiny demo base) is copied to ``OUT/base`` once, so the export stands
on its own; the adapters' configs name it there. Reads the run only: a moved or copied run directory
exports the same.
"""

from __future__ import annotations

import argparse
import json
import shutil
from pathlib import Path
from typing import Any

from sparta_hpc.config import load_saved_config
from sparta_hpc.errors import SpartaError, StateError
from sparta_hpc.files import atomic_write_text, dump_json, staging_dir
from sparta_hpc.report import results
from sparta_hpc.store.models import players_after, stored, user_paths
from sparta_hpc.store.rundir import RunDir
from sparta_hpc.store.state import RunState, load_state
from sparta_hpc.tasks.evaluation import INITIAL, best_on_val, label_after, label_order

CHOICES = ("best", "last")
ADAPTER_FILES = ("adapter_config.json", "adapter_model.safetensors")


class ExportError(SpartaError, ValueError):
    """An export that cannot be made as asked (no such iteration, nothing evaluated, the output exists)."""


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("run_dir")
    p.add_argument("--out", required=True, help="output folder (one subfolder per player)")
    p.add_argument(
        "--iteration",
        default="best",
        help="best (each player's iteration with the highest val score), last, or an iteration number N "
        "(the adapters after iteration N); default best",
    )
    p.add_argument("--merge", action="store_true", help="also write each model merged into its base")


def main(args: argparse.Namespace) -> int:
    written = export(RunDir(args.run_dir), Path(args.out), args.iteration, merge=args.merge)
    for player, info in written.items():
        print(f"{player}: iteration {info['iteration']} -> {info['path']}")
    return 0


def export(run: RunDir, out: Path, iteration: str = "best", *, merge: bool = False) -> dict[str, Any]:
    """Export every player (see the module docstring); ``{player: sparta.json's content + path}``."""
    state = load_state(run)
    if state is None:
        raise StateError(f"{run.state_file} does not exist: {run.root} is not a run directory")
    cfg = load_saved_config(run.config_file)
    keep = user_paths([*cfg.models, cfg.eval.judge_model])
    res = results.collect(run)
    chosen = choose(state, res, iteration)
    out = out.resolve()
    taken = [str(out / p) for p in chosen if (out / p).exists()]
    if taken:
        raise ExportError(f"{', '.join(taken)} already exist(s): choose another --out or remove them")
    models = {p: players_after(t, run, keep)[p] for p, (t, _) in chosen.items()}
    bases = {p: _base_name(run, out, str(spec["base"])) for p, spec in models.items()}
    written: dict[str, Any] = {}
    for player, (t, reason) in chosen.items():
        spec, base_name = models[player], bases[player]
        info = _card_facts(run, state, res, player, t, reason, spec, base_name)
        with staging_dir(out / player) as tmp:
            _write_player(tmp, spec, base_name, merge)
            atomic_write_text(tmp / "sparta.json", dump_json(info))
            atomic_write_text(
                tmp / "README.md", model_card(info, run.config_file.read_text(encoding="utf-8"))
            )
        written[player] = {**info, "path": str(out / player)}
    return written


def choose(state: RunState, res: results.EvalResults, iteration: str) -> dict[str, tuple[int, str]]:
    """``{player: (t, why)}``: the adapters after iteration t are exported."""
    if state.iteration == 0:
        raise ExportError("no iteration is committed yet: nothing trained to export")
    last = state.iteration - 1
    if iteration == "last":
        return {p: (last, "the last committed iteration") for p in res.players}
    if iteration != "best":
        try:
            t = int(iteration)
        except ValueError:
            raise ExportError(f"--iteration {iteration!r}: use best, last or a number") from None
        if not 0 <= t <= last:
            raise ExportError(f"--iteration {t}: the run has committed iterations 0..{last}")
        return {p: (t, f"iteration {t}, as asked") for p in res.players}
    labels = [label for label in res.labels if label != INITIAL and label_order(label) <= last]
    out = {}
    for p in res.players:
        best = best_on_val(res.scores, [(label, p) for label in labels])
        if best is None:
            raise ExportError(
                f"{p} has no val score after any committed iteration (eval.every=0?): "
                "use --iteration last or --iteration N"
            )
        out[p] = (label_order(best[0]), f"its highest val score over iterations {', '.join(labels)}")
    return out


def _base_name(run: RunDir, out: Path, base: str) -> str:
    """The base as exported adapters name it: the user's base as the config gave it; a base the run built is
    copied to ``OUT/base`` (once) and named there."""
    if stored(run, base) == base:
        return base
    target = out / "base"
    if not target.exists():
        with staging_dir(target) as tmp:
            shutil.copytree(base, tmp, dirs_exist_ok=True)
    return str(target)


def _write_player(folder: Path, spec: dict[str, str | None], base_name: str, merge: bool) -> None:
    """The adapter (its config naming ``base_name``), the tokenizer and, with ``merge``, ``merged/``."""
    from transformers import AutoTokenizer

    base, adapter = str(spec["base"]), spec["adapter"]
    if adapter is not None:
        for name in ADAPTER_FILES:
            shutil.copy2(Path(adapter) / name, folder / name)
        config = json.loads((folder / "adapter_config.json").read_text(encoding="utf-8"))
        config["base_model_name_or_path"] = base_name
        atomic_write_text(folder / "adapter_config.json", json.dumps(config, indent=2, sort_keys=True))
    tokenizer = AutoTokenizer.from_pretrained(base)
    tokenizer.save_pretrained(folder)
    if merge:
        _merge(base, adapter, folder / "merged")
        tokenizer.save_pretrained(folder / "merged")


def _merge(base: str, adapter: str | None, out: Path) -> None:
    """The base with the adapter merged in, as safetensors (the base alone for a base-only player)."""
    from transformers import AutoModelForCausalLM

    model: Any = AutoModelForCausalLM.from_pretrained(base, dtype="auto", use_safetensors=True)
    if adapter is not None:
        from peft import PeftModel

        model = PeftModel.from_pretrained(model, adapter).merge_and_unload()
    model.save_pretrained(out, safe_serialization=True)


def _card_facts(
    run: RunDir,
    state: RunState,
    res: results.EvalResults,
    player: str,
    t: int,
    reason: str,
    spec: dict[str, str | None],
    base_name: str,
) -> dict[str, Any]:
    """What the model card says, as data (``sparta.json``)."""
    board = {r["player"]: r for r in state.leaderboard()}
    history = state.rating_history
    evaluation = {
        label: res.scores[label][player] for label in res.labels if player in res.scores.get(label, {})
    }
    return {
        "player": player,
        "iteration": t,
        "label": label_after(t),
        "chosen_by": reason,
        "base": base_name,
        "adapter_in_run": stored(run, spec["adapter"]),
        "rating_after_iteration": history[t].get(player) if t < len(history) else None,
        "final_rating": board[player]["rating"],
        "final_deviation": board[player]["deviation"],
        "final_rank": board[player]["rank"],
        "players": len(board),
        "iterations": state.iteration,
        "task": res.task,
        "metric": results.metric_name(res.task),
        "evaluation": evaluation,
    }


def model_card(info: dict[str, Any], config_yaml: str) -> str:
    """``README.md`` of an exported player: Hugging Face front matter, then the facts and the config."""
    label = info["label"]
    rows = [
        f"| {f'**{name}** (exported)' if name == label else name} | {_fmt(s.get('val'))} "
        f"| {_fmt(s.get('test'))} |"
        for name, s in info["evaluation"].items()
    ]
    lines = [
        "---",
        "library_name: peft",
        f"base_model: {info['base']}",
        "tags: [sparta, dpo, lora, sparta-hpc]",
        "---",
        "",
        f"# {info['player']} after SPARTA iteration {info['iteration']}",
        "",
        f"LoRA adapter trained by DPO in a SPARTA tournament of {info['players']} players "
        f"({info['iterations']} iterations), exported by `sparta-hpc export`.",
        "",
        f"- Iteration: {info['iteration']} (`{label}`), chosen by {info['chosen_by']}.",
        f"- Base model: `{info['base']}`.",
        f"- Rating after iteration {info['iteration']}: {_fmt(info['rating_after_iteration'])}; "
        f"final rating {_fmt(info['final_rating'])} +- {_fmt(info['final_deviation'])} "
        f"(rank {info['final_rank']} of {info['players']}).",
        "",
        f"## Evaluation: {info['task']} ({info['metric']})",
        "",
        "| model | val | test |",
        "| --- | --- | --- |",
        *(rows or ["| - | - | - |"]),
        "",
        "## Usage",
        "",
        "```python",
        "from peft import PeftModel",
        "from transformers import AutoModelForCausalLM, AutoTokenizer",
        "",
        f'base = AutoModelForCausalLM.from_pretrained("{info["base"]}")',
        'model = PeftModel.from_pretrained(base, "<this folder>")',
        'tokenizer = AutoTokenizer.from_pretrained("<this folder>")',
        "```",
        "",
        "## Run config",
        "",
        "```yaml",
        config_yaml.rstrip(),
        "```",
        "",
    ]
    return "\n".join(lines)


def _fmt(value: float | None) -> str:
    return "-" if value is None else f"{value:.4f}"
