"""``sparta-hpc`` commands: run, status, cancel, report, rate, prepare-data. Nothing heavy is imported."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any

from sparta_hpc.config import DEFAULT_CONFIG, ConfigError, SpartaConfig, check_paths, config_hash, load_config

if TYPE_CHECKING:
    from sparta_hpc.rundir import RunDir

RUN_EPILOG = (
    "Overrides: key=value pairs after the options, e.g. plan.alpha=0.5 run.iterations=2; "
    "cluster=NAME is the same as --cluster-preset NAME."
)


def add_run_arguments(p: argparse.ArgumentParser) -> None:
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


def cmd_run(args: argparse.Namespace, launcher_job: str | None = None) -> int:
    from sparta_hpc import iteration
    from sparta_hpc.rundir import RunDir

    overrides = list(args.overrides)
    if args.cluster:
        overrides.append(f"cluster.backend={args.cluster}")
    cfg = load_config(args.config, overrides, preset=args.cluster_preset)
    check_paths(cfg)
    root = Path(args.run_dir) if args.run_dir else Path("runs") / f"{cfg.run.name}-{config_hash(cfg)[:8]}"
    run_dir = RunDir(root)
    print(f"run directory: {run_dir.root}", flush=True)
    if args.detach:
        return _detach(args, cfg, run_dir)
    log = lambda s: print(s, flush=True)  # noqa: E731
    state = iteration.run(cfg, run_dir, force=args.force, log=log, launcher_job=launcher_job)
    print(f"done: {state.iteration}/{state.iterations_total} iterations\nrun directory: {run_dir.root}")
    return 0


def _detach(args: argparse.Namespace, cfg: SpartaConfig, run_dir: RunDir) -> int:
    """Submit the launcher as a Slurm job (``--detach``) and say how to follow and stop it."""
    from sparta_hpc import control

    argv = control.launcher_argv(args.config, run_dir, args.cluster_preset, args.force, list(args.overrides))
    job_id = control.detach(cfg, run_dir, argv)
    print(
        f"launcher submitted as Slurm job {job_id}; its log: {run_dir.launcher_jobs}/{job_id}_0_log.out\n"
        f"follow it:  sparta-hpc status {run_dir.root} --watch\n"
        f"stop it:    sparta-hpc cancel {run_dir.root}"
    )
    return 0


def cmd_cancel(args: argparse.Namespace) -> int:
    from sparta_hpc import control

    cancelled = control.cancel(Path(args.run_dir))
    print(f"cancelled: {', '.join(cancelled)}" if cancelled else "no live job to cancel")
    return 0


def cmd_status(args: argparse.Namespace) -> int:
    from sparta_hpc.status import render, watch

    if args.watch is not None:
        return watch(Path(args.run_dir), args.watch, args.json)
    print(render(Path(args.run_dir), args.json))
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="sparta-hpc", description="SPARTA alignment on Slurm clusters")
    sub = parser.add_subparsers(dest="command", required=True)
    add_run_arguments(sub.add_parser("run", help="run or resume a tournament", epilog=RUN_EPILOG))
    status = sub.add_parser("status", help="iterations x stages and the current ratings of a run")
    status.add_argument("run_dir")
    status.add_argument("--json", action="store_true", help="machine-readable output")
    watch_help = "refresh every SECONDS (default 10) until the run is done"
    status.add_argument("--watch", nargs="?", type=float, const=10.0, metavar="SECONDS", help=watch_help)
    cancel = sub.add_parser("cancel", help="stop a run's launcher and cancel its live Slurm jobs")
    cancel.add_argument("run_dir")
    report = sub.add_parser("report", help="results table, leaderboard, plots and an HTML report of a run")
    report.add_argument("run_dir")
    report.add_argument("--out", help="output folder (default: RUN_DIR/report)")
    from sparta_hpc import plan, rescore
    from sparta_hpc.tasks import prepare

    plan.add_arguments(
        sub.add_parser("plan", help="jobs, GPU-hours, wall time and memory of a config; submits nothing")
    )

    rescore.add_arguments(sub.add_parser("rate", help="re-run rating and pair selection of one iteration"))
    prepare.add_arguments(
        sub.add_parser("prepare-data", help="convert a task's data to the canonical format")
    )
    return parser


COMMANDS: dict[str, Any] = {"run": cmd_run, "status": cmd_status, "cancel": cmd_cancel}


def main(argv: list[str] | None = None) -> None:
    args = build_parser().parse_args(argv)
    try:
        if args.command == "rate":
            from sparta_hpc import rescore

            code = rescore.main(args)
        elif args.command == "report":
            from sparta_hpc import report

            code = report.main(args)
        elif args.command == "plan":
            from sparta_hpc import plan

            code = plan.main(args)
        elif args.command == "prepare-data":
            from sparta_hpc.tasks import prepare

            code = prepare.main(args)
        else:
            code = COMMANDS[args.command](args)
    except ConfigError as e:
        print(f"config error: {e}", file=sys.stderr)
        code = 2
    except KeyboardInterrupt:
        print("interrupted; run the same command again to resume", file=sys.stderr)
        code = 130
    except Exception as e:  # user-facing errors of our own kinds
        from sparta_hpc.errors import USER_ERRORS

        if not isinstance(e, USER_ERRORS):
            raise
        print(f"error: {e}", file=sys.stderr)
        code = 1
    sys.exit(code)


if __name__ == "__main__":
    main()
