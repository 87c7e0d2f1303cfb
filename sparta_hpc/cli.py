"""``sparta-hpc`` commands: run, status, cancel, report, export, compare, rate, simulate, plan,
prepare-data, build-pool, models.

Nothing heavy is imported to build the parser."""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path
from typing import Any

from sparta_hpc.errors import ConfigError, SpartaError


def cmd_run(args: argparse.Namespace) -> int:
    from sparta_hpc.run import launcher

    return launcher.start(launcher.spec_from_args(args))


def cmd_cancel(args: argparse.Namespace) -> int:
    from sparta_hpc.run import control

    cancelled = control.cancel(Path(args.run_dir))
    print(f"cancelled: {', '.join(cancelled)}" if cancelled else "no live job to cancel")
    return 0


def cmd_status(args: argparse.Namespace) -> int:
    from sparta_hpc.report.status import render, watch

    queue = None if args.no_slurm else _squeue
    if args.watch is not None:
        return watch(Path(args.run_dir), args.watch, args.json, queue=queue)
    print(render(Path(args.run_dir), args.json, queue=queue))
    return 0


def _squeue(job_ids: list[str]) -> dict[str, dict[str, str]] | None:
    """The live states of the run's jobs for ``status``: one squeue call (``report/`` never imports
    ``cluster/``; the CLI passes this in)."""
    from sparta_hpc.cluster.squeue_states import squeue_states

    states = squeue_states(job_ids)
    return None if states is None else {j: s.to_dict() for j, s in states.items()}


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="sparta-hpc", description="SPARTA alignment on Slurm clusters")
    import sparta_hpc

    parser.add_argument("--version", action="version", version=f"sparta-hpc {sparta_hpc.__version__}")
    sub = parser.add_subparsers(dest="command", required=True)
    from sparta_hpc.run import launcher

    launcher.add_arguments(
        sub.add_parser("run", help="run or resume a tournament", epilog=launcher.RUN_EPILOG)
    )
    status = sub.add_parser("status", help="iterations x stages and the current ratings of a run")
    status.add_argument("run_dir")
    status.add_argument("--json", action="store_true", help="machine-readable output")
    watch_help = "refresh every SECONDS (default 10) until the run is done or no launcher drives it (exit 1)"
    status.add_argument("--watch", nargs="?", type=float, const=10.0, metavar="SECONDS", help=watch_help)
    no_slurm = "do not ask squeue for the live states of the run's jobs"
    status.add_argument("--no-slurm", action="store_true", help=no_slurm)
    cancel = sub.add_parser("cancel", help="stop a run's launcher and cancel its live Slurm jobs")
    cancel.add_argument("run_dir")
    report = sub.add_parser("report", help="results table, leaderboard, plots and an HTML report of a run")
    report.add_argument("run_dir")
    report.add_argument("--out", help="output folder (default: RUN_DIR/report)")
    from sparta_hpc.report import export

    export.add_arguments(
        sub.add_parser("export", help="each player's adapter in Hugging Face format with a model card")
    )
    compare = sub.add_parser("compare", help="one table and plot over several finished runs")
    compare.add_argument("run_dirs", nargs="+", metavar="RUN_DIR", help="finished run directories")
    compare.add_argument("--out", default="compare", help="output folder (default: ./compare)")
    from sparta_hpc.tasks import prepare
    from sparta_hpc.tools import cost as plan
    from sparta_hpc.tools import models, rescore, simulate

    plan.add_arguments(
        sub.add_parser("plan", help="jobs, GPU-hours, wall time and memory of a config; submits nothing")
    )

    rescore.add_arguments(sub.add_parser("rate", help="re-run rating and pair selection of one iteration"))
    simulate.add_arguments(
        sub.add_parser("simulate", help="the method on simulated players and judges: sweeps, tables, plots")
    )
    prepare.add_arguments(
        sub.add_parser("prepare-data", help="convert a task's data to the canonical format")
    )
    from sparta_hpc.run import pool

    pool.add_arguments(
        sub.add_parser("build-pool", help="SFT one LoRA expert per dataset from one base (a pool of players)")
    )
    models.add_arguments(
        sub.add_parser("models", help="download/convert a config's models for offline jobs, or check them")
    )
    return parser


COMMANDS: dict[str, Any] = {"run": cmd_run, "status": cmd_status, "cancel": cmd_cancel}


def main(argv: list[str] | None = None) -> None:
    try:
        code = _dispatch(argv)
    except BrokenPipeError:  # the reader went away (``status --json | head``): stop quietly, as Unix tools do
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())  # so that flushing stdout at exit raises nothing
        code = 141
    sys.exit(code)


def _dispatch(argv: list[str] | None) -> int:
    """Parse ``argv`` and run its command; the exit code (a SpartaError is printed as one line)."""
    args = build_parser().parse_args(argv)
    try:
        if args.command == "rate":
            from sparta_hpc.tools import rescore

            code = rescore.main(args)
        elif args.command == "report":
            from sparta_hpc.report import build as report

            code = report.main(args)
        elif args.command == "export":
            from sparta_hpc.report import export

            code = export.main(args)
        elif args.command == "compare":
            from sparta_hpc.report import compare

            code = compare.main(args)
        elif args.command == "simulate":
            from sparta_hpc.tools import simulate

            code = simulate.main(args)
        elif args.command == "plan":
            from sparta_hpc.tools import cost as plan

            code = plan.main(args)
        elif args.command == "build-pool":
            from sparta_hpc.run import pool

            code = pool.main(args)
        elif args.command == "models":
            from sparta_hpc.tools import models

            code = models.main(args)
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
    except SpartaError as e:
        print(f"error: {e}", file=sys.stderr)
        code = 1
    return int(code)


if __name__ == "__main__":
    main()
