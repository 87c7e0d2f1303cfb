"""Starting a run: what the user asked for (``LaunchSpec``) and the one ``start`` that both ``sparta-hpc run``
and the detached launcher job call.

The detached launcher is submitted with its ``LaunchSpec`` (absolute paths, Slurm backend), never with an
argv for the CLI, so nothing here imports the CLI.
"""

from __future__ import annotations

import argparse
import os
from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path

from sparta_hpc.config import DEFAULT_CONFIG, SpartaConfig, check_paths, config_hash, load_config
from sparta_hpc.errors import ConfigError
from sparta_hpc.run import control, iteration
from sparta_hpc.run.resume import check_resumable
from sparta_hpc.store.rundir import RunDir
from sparta_hpc.tasks.evaluation import check_task_data

RUN_EPILOG = (
    "Overrides: key=value pairs after the options, e.g. plan.alpha=0.5 run.iterations=2; "
    "cluster=NAME is the same as --cluster-preset NAME."
)


@dataclass(frozen=True, kw_only=True)
class LaunchSpec:
    """Everything ``sparta-hpc run`` was asked: which config, with which overrides, where, and how."""

    config: str = str(DEFAULT_CONFIG)
    """YAML config file."""
    overrides: tuple[str, ...] = ()
    """``key=value`` overrides, applied after the file (``cluster=NAME`` picks a preset)."""
    cluster: str | None = None
    """``inline``, ``local`` or ``slurm``: overrides ``cluster.backend``."""
    preset: str | None = None
    """Cluster resources preset (``configs/cluster/NAME.yaml`` or a YAML path)."""
    run_dir: str | None = None
    """Run directory; default ``runs/<run.name>-<config hash>``."""
    force: bool = False
    """Resume even if result-changing keys differ."""
    detach: bool = False
    """Submit the launcher itself as a Slurm job and return."""

    def load(self) -> SpartaConfig:
        overrides = [*self.overrides, *([f"cluster.backend={self.cluster}"] if self.cluster else [])]
        return load_config(self.config, overrides, preset=self.preset)

    def run_directory(self, cfg: SpartaConfig) -> RunDir:
        default = Path("runs") / f"{cfg.run.name}-{config_hash(cfg)[:8]}"
        return RunDir(Path(self.run_dir) if self.run_dir else default)


def add_arguments(p: argparse.ArgumentParser) -> None:
    """The options of ``sparta-hpc run`` (and ``launch.py``); ``spec_from_args`` reads them back."""
    p.add_argument("--config", default=str(DEFAULT_CONFIG), help="YAML config (default: the tiny CPU demo)")
    p.add_argument("--cluster", choices=("inline", "local", "slurm"), help="where jobs run (cluster.backend)")
    p.add_argument(
        "--cluster-preset", metavar="NAME", help="resources preset configs/cluster/NAME.yaml (or a YAML path)"
    )
    p.add_argument(
        "--detach", action="store_true", help="submit the launcher itself as a Slurm job and return"
    )
    p.add_argument("--run-dir", help="run directory (default: runs/<run.name>-<config hash>)")
    p.add_argument("--force", action="store_true", help="resume even if result-changing keys differ")
    p.add_argument("overrides", nargs="*", metavar="key=value")


def spec_from_args(args: argparse.Namespace) -> LaunchSpec:
    return LaunchSpec(
        config=args.config,
        overrides=tuple(args.overrides),
        cluster=args.cluster,
        preset=args.cluster_preset,
        run_dir=args.run_dir,
        force=args.force,
        detach=args.detach,
    )


def start(
    spec: LaunchSpec, *, log: Callable[[str], None] | None = None, launcher_job: str | None = None
) -> int:
    """Run or resume the tournament ``spec`` describes, or submit its launcher (``detach``); exit code.

    Every input is checked before anything is written or submitted: the config, every path it names, the task
    data the plan and evaluate stages will read, and that an existing run directory may be continued."""
    log = log or (lambda s: print(s, flush=True))
    cfg = spec.load()
    if spec.detach and cfg.cluster.backend != "slurm":
        raise ConfigError("--detach submits the launcher to Slurm: use it with --cluster slurm")
    check_paths(cfg)
    check_task_data(cfg.task, cfg.eval, cfg.run.seed)
    run_dir = spec.run_directory(cfg)
    check_resumable(cfg, run_dir, spec.force)
    log(f"run directory: {run_dir.root}")
    if spec.detach:
        return _detach(spec, cfg, run_dir, log)
    state = iteration.run(cfg, run_dir, force=spec.force, log=log, launcher_job=launcher_job)
    log(f"done: {state.iteration}/{state.iterations_total} iterations\nrun directory: {run_dir.root}")
    return 0


def _detach(spec: LaunchSpec, cfg: SpartaConfig, run_dir: RunDir, log: Callable[[str], None]) -> int:
    """Submit the launcher as a Slurm job (``--detach``) and say how to follow and stop it."""
    job_spec = replace(
        spec,
        config=str(Path(spec.config).resolve()),
        run_dir=str(run_dir.root),
        cluster="slurm",
        detach=False,
    )
    job_id = control.detach(cfg, run_dir, run_launcher_job, job_spec)
    log(
        f"launcher submitted as Slurm job {job_id}; its log: {run_dir.launcher_jobs}/{job_id}_0_log.out\n"
        f"follow it:  sparta-hpc status {run_dir.root} --watch\n"
        f"stop it:    sparta-hpc cancel {run_dir.root}"
    )
    return 0


def run_launcher_job(spec: LaunchSpec) -> int:
    """The detached launcher job's entry point: ``start`` with this job's id recorded in the state."""
    return start(spec, launcher_job=os.environ.get("SLURM_JOB_ID"))


def run_detached(argv: list[str]) -> int:
    """Entry point of launcher jobs submitted before ``LaunchSpec`` existed (they pickled an argv)."""
    parser = argparse.ArgumentParser(prog="sparta-hpc run")
    add_arguments(parser)
    return run_launcher_job(spec_from_args(parser.parse_args(argv)))
