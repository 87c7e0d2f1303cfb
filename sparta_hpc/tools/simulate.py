"""``sparta-hpc simulate``: the method core on simulated players and judges, at any scale, with no model.

Each setting (the profile's presets, then ``KEY=VALUE`` overrides, then one value of every ``--sweep``) runs
``sim.iterations`` iterations of the real match-making, rating and pair selection (``sparta_hpc.method``) on
judged matches drawn from the model of ``tools/sim_model.py``, once per seed. ``plan.*`` and ``rate.*`` keys
go through the config loader (``config.load_section``), so every key of those sections, new ones included, can
be set or swept without a change here; ``sim.*`` keys set the simulated players and judges. Writes
``summary.md``, ``summary.csv``, ``iterations.csv``, ``runs.csv``, ``settings.json`` and plots to ``--out``.
Guide: docs/choosing-a-profile.md.
"""

from __future__ import annotations

import argparse
import functools
import itertools
import shlex
import sys
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass, fields
from pathlib import Path
from typing import TYPE_CHECKING, Any

from omegaconf import OmegaConf
from omegaconf.errors import OmegaConfBaseException

from sparta_hpc.config import load_section
from sparta_hpc.errors import SpartaError
from sparta_hpc.files import write_json
from sparta_hpc.method.settings import PROFILES, PlanConfig, RateConfig

if TYPE_CHECKING:  # numpy and matplotlib load only when the command runs, not for ``sparta-hpc --help``
    from sparta_hpc.tools.sim_model import SimConfig, SimRun

SECTIONS = ("plan", "rate", "sim")
PROFILE_KEYS = ("profile", "run.profile")


class SimulateError(SpartaError, ValueError):
    """An option of ``sparta-hpc simulate`` is invalid; the message names the key."""


@dataclass(frozen=True, kw_only=True)
class Setting:
    """One combination of settings: its label, its swept values and the resolved sections."""

    label: str
    swept: dict[str, str]
    profile: str
    plan: PlanConfig
    rate: RateConfig
    sim: SimConfig

    def resolved(self) -> dict[str, Any]:
        return {"profile": self.profile, "plan": asdict(self.plan), "rate": asdict(self.rate)} | {
            "sim": asdict(self.sim)
        }


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """The options of ``sparta-hpc simulate``."""
    parser.add_argument(
        "--profile",
        choices=sorted(PROFILES),
        default="paper",
        help="preset of plan/rate keys (default: paper)",
    )
    parser.add_argument(
        "--sweep",
        action="append",
        default=[],
        metavar="KEY=V1,V2",
        help="run every value of KEY (profile, plan.*, rate.*, sim.*); several --sweep: every combination",
    )
    parser.add_argument("--seeds", type=int, default=5, help="runs per setting, seeds SEED.. (default: 5)")
    parser.add_argument("--seed", type=int, default=0, help="first seed (default: 0)")
    parser.add_argument("--out", required=True, type=Path, help="output folder for tables and plots")
    parser.add_argument("--no-plots", action="store_true", help="write the tables only (faster)")
    parser.add_argument(
        "overrides",
        nargs="*",
        metavar="KEY=VALUE",
        help="fixed settings: plan.KEY, rate.KEY (any key of those config sections) or sim.KEY",
    )


def split_item(item: str, what: str) -> tuple[str, str]:
    """``KEY=VALUE`` -> ``(KEY, VALUE)`` with ``run.profile`` as ``profile``; the key's section is checked."""
    key, sep, value = item.partition("=")
    key = key.strip()
    if not sep or not key:
        raise SimulateError(f"{what} {item!r}: give KEY=VALUE")
    if key in PROFILE_KEYS:
        return "profile", value
    if key.partition(".")[0] not in SECTIONS or "." not in key:
        raise SimulateError(
            f"{what} {item!r}: simulate reads only profile and the keys of plan.*, rate.* and sim.* "
            f"(sim keys: {', '.join(sim_keys())})"
        )
    return key, value


def sim_keys() -> list[str]:
    from sparta_hpc.tools.sim_model import SimConfig

    return [f"sim.{f.name}" for f in fields(SimConfig)]


def sim_config(items: dict[str, str]) -> SimConfig:
    """SimConfig defaults <- ``sim.KEY=VALUE`` items, typed and checked like a config section."""
    from sparta_hpc.tools.sim_model import SimConfig

    unknown = [k for k in items if k not in sim_keys()]
    if unknown:
        raise SimulateError(f"unknown key {unknown[0]!r}; valid keys: {', '.join(sim_keys())}")
    try:
        dotlist = [f"{k.removeprefix('sim.')}={v}" for k, v in items.items()]
        merged = OmegaConf.merge(OmegaConf.structured(SimConfig), OmegaConf.from_dotlist(dotlist))
        cfg = OmegaConf.to_object(merged)
    except OmegaConfBaseException as e:
        key = getattr(e, "full_key", None)
        given = f"sim.{key}={items.get(f'sim.{key}')!r}: " if key else ""
        raise SimulateError(f"{given}{str(e).splitlines()[0]}") from None
    assert isinstance(cfg, SimConfig)
    return cfg


@functools.lru_cache(maxsize=256)
def _section(section: str, profile: str, items: tuple[str, ...]) -> Any:
    """``config.load_section``, once per distinct input (a sweep repeats most of them; each call costs
    a quarter of a second). Callers never modify the returned dataclass."""
    return load_section(section, profile, items)


def build_setting(label: str, items: dict[str, str], swept: dict[str, str]) -> Setting:
    """Resolve one setting: ``items`` maps keys (``profile``, ``plan.*``, ``rate.*``, ``sim.*``) to values."""
    profile = items.get("profile", "paper")
    if profile not in PROFILES:
        raise SimulateError(f"profile={profile!r} is not valid; allowed values: {', '.join(PROFILES)}")
    plan = _section("plan", profile, tuple(f"{k}={v}" for k, v in items.items() if k.startswith("plan.")))
    rate = _section("rate", profile, tuple(f"{k}={v}" for k, v in items.items() if k.startswith("rate.")))
    sim = sim_config({k: v for k, v in items.items() if k.startswith("sim.")})
    if plan.k > sim.players - 1:
        raise SimulateError(
            f"{label}: plan.k={plan.k} but only {sim.players - 1} opponents exist "
            f"(sim.players={sim.players}); lower plan.k"
        )
    return Setting(label=label, swept=swept, profile=profile, plan=plan, rate=rate, sim=sim)


def expand(profile: str, overrides: Sequence[str], sweeps: Sequence[str]) -> list[Setting]:
    """Every combination of the sweeps' values (the first sweep varies slowest) on top of the overrides."""
    fixed = {"profile": profile} | dict(split_item(item, "override") for item in overrides)
    axes: list[tuple[str, list[str]]] = []
    for item in sweeps:
        key, values = split_item(item, "--sweep")
        if any(key == k for k, _ in axes):
            raise SimulateError(f"--sweep {item!r}: {key} is swept twice")
        choices = [v.strip() for v in values.split(",")]
        if not all(choices) or len(set(choices)) != len(choices):
            raise SimulateError(f"--sweep {item!r}: give distinct, non-empty values separated by commas")
        axes.append((key, choices))
    settings = []
    for combination in itertools.product(*(values for _, values in axes)):
        swept = {key: value for (key, _), value in zip(axes, combination, strict=True)}
        label = " ".join(f"{k}={v}" for k, v in swept.items()) or "base"
        settings.append(build_setting(label, fixed | swept, swept))
    return settings


def run_all(settings: Sequence[Setting], seeds: Sequence[int]) -> dict[str, list[tuple[int, SimRun]]]:
    """Every setting under every seed."""
    from sparta_hpc.tools.sim_model import simulate

    return {s.label: [(seed, simulate(s.plan, s.rate, s.sim, seed)) for seed in seeds] for s in settings}


def command_line(args: argparse.Namespace) -> str:
    """The command as typed (without --out): it is written into the summary."""
    parts = ["sparta-hpc", "simulate", "--profile", args.profile, "--seeds", str(args.seeds)]
    parts += ["--seed", str(args.seed)] if args.seed else []
    for item in args.sweep:
        parts += ["--sweep", item]
    return shlex.join(parts + list(args.overrides))


def scale(settings: Sequence[Setting]) -> str:
    """A line on the size of the simulated runs (shown when it is the same for every setting)."""
    sizes = {(s.sim.players, s.plan.num_prompts, s.sim.iterations) for s in settings}
    if len(sizes) != 1:
        return f"{len(settings)} settings of differing scale"
    m, n, t = sizes.pop()
    return f"{m} players x {n} prompts x {t} iterations per run"


def main(args: argparse.Namespace) -> int:
    """Run ``sparta-hpc simulate``; 0 on success, 2 on an invalid option (nothing written)."""
    started = time.perf_counter()
    try:
        if args.seeds < 1 or args.seed < 0:
            raise SimulateError(f"--seeds {args.seeds} --seed {args.seed}: need seeds >= 1 and seed >= 0")
        settings = expand(args.profile, args.overrides, args.sweep)
    except ValueError as e:
        print(f"sparta-hpc simulate: error: {e}", file=sys.stderr)
        return 2
    from sparta_hpc.tools.sim_report import markdown, write_outputs

    seeds = list(range(args.seed, args.seed + args.seeds))
    runs = run_all(settings, seeds)
    swept = {s.label: s.swept for s in settings}
    results = write_outputs(args.out, runs, swept, command_line(args), scale(settings), not args.no_plots)
    write_json(args.out / "settings.json", {s.label: s.resolved() for s in settings})
    elapsed = time.perf_counter() - started
    print(markdown(results, seeds, command_line(args), scale(settings)))
    print(f"{len(settings)} settings x {len(seeds)} seeds simulated in {elapsed:.1f} s; wrote {args.out}/")
    return 0


if __name__ == "__main__":
    _parser = argparse.ArgumentParser(prog="sparta-hpc simulate", description=__doc__.splitlines()[0])
    add_arguments(_parser)
    sys.exit(main(_parser.parse_args()))
