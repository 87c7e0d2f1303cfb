"""The paper setup priced by ``sparta-hpc plan`` in both stage layouts, under the same plan model.

    python bench/plan_layouts.py [--config configs/paper.yaml] [--queue-wait-s 0] [key=value ...]

The issue's setup: ``configs/paper.yaml`` on the ``a100x16`` preset with evaluation every iteration on 500
examples per split (``eval.max_examples=500``). ``old``: the separate layout with the chunks of 64 requests
that engines got before combat (``engine.vllm_min_chunk=1`` where the config has that key); ``new``: the
combat layout with its chunking (vLLM gets at least 512 requests per call: ``engine.vllm_min_chunk``, or
``*.chunk_size=512`` on a tree without that key). Two more rows split the saving into its causes: the old
layout with the new chunks, the new layout with the old chunks. Prints a Markdown table (docs/performance.md)
and the targets of the issue (model starts per iteration, the last evaluation's starts, GPU-hours saved).
Submits nothing, needs no GPU: every figure is ``sparta_hpc.tools.cost.plan_report``.
"""

from __future__ import annotations

import argparse
import os
from typing import Any

from sparta_hpc.config import CONFIG_DIR, load_config
from sparta_hpc.engines.base import EngineConfig
from sparta_hpc.tools.cost import plan_report

SETUP = ["cluster=a100x16", "eval.max_examples=500"]
HAS_MIN_CHUNK = "vllm_min_chunk" in EngineConfig.__dataclass_fields__
SMALL = ["engine.vllm_min_chunk=1"] if HAS_MIN_CHUNK else []
"""The engine gets ``*.chunk_size`` (64) requests per call, as before combat."""
LARGE = [] if HAS_MIN_CHUNK else [f"{s}.chunk_size=512" for s in ("generate", "judge", "eval")]
"""The engine gets at least 512 requests per call, as under combat."""


def rows(config: str, extra: list[str], queue_wait_s: float) -> list[tuple[str, list[str], dict[str, Any]]]:
    """(name, overrides, plan report) of each priced layout."""
    layouts = {
        "old: separate, 64-request chunks": ["run.stage_layout=separate", *SMALL],
        "new: combat, >= 512-request chunks": ["run.stage_layout=combat", *LARGE],
        "new, generate.num_shards=16": ["run.stage_layout=combat", *LARGE, "generate.num_shards=16"],
        "separate, >= 512-request chunks": ["run.stage_layout=separate", *LARGE],
        "combat, 64-request chunks": ["run.stage_layout=combat", *SMALL],
    }
    out = []
    for name, overrides in layouts.items():
        every = [*SETUP, *overrides, *extra]
        out.append((name, every, plan_report(load_config(config, every), {"queue_wait_s": queue_wait_s})))
    return out


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--config", default=os.path.relpath(CONFIG_DIR / "paper.yaml"))
    p.add_argument("--queue-wait-s", type=float, default=0.0)
    p.add_argument("overrides", nargs="*", metavar="key=value")
    args = p.parse_args()
    priced = rows(args.config, list(args.overrides), args.queue_wait_s)
    old = priced[0][2]
    print(f"setup: {args.config} {' '.join([*SETUP, *args.overrides])}; queue wait {args.queue_wait_s:g} s\n")
    print("| layout | model starts: iteration 0 / later / last | of which the last evaluation | GPU-hours "
          "(start-up + compute) | vs old | idle GPU-hours | wall hours |")  # fmt: skip
    print("|---|---|---|---|---|---|---|")
    for name, _, r in priced:
        starts = [it["starts"] for it in r["iterations"]]
        compute = r["total_gpu_hours"] - r["total_startup_gpu_hours"]
        saved = 1 - r["total_gpu_hours"] / old["total_gpu_hours"]
        hours = f"{r['total_gpu_hours']:.2f} ({r['total_startup_gpu_hours']:.2f} + {compute:.2f})"
        print(
            f"| {name} | {starts[0]} / {max(starts[1:-1], default=starts[0])} / {starts[-1]} | "
            f"{r['final_evaluation_starts']} | {hours} | {f'{-saved:+.1%}' if r is not old else '-'} | "
            f"{r['total_idle_gpu_hours']:.2f} | "
            f"{r['total_wall_hours']:.2f} |"
        )
    print()
    for name, overrides, _ in priced[:3]:
        print(f"{name}: sparta-hpc plan --config {args.config} {' '.join(overrides)}")
    new = priced[1][2]
    per_iteration = max(it["starts"] for it in new["iterations"][:-1])
    last = new["iterations"][-1]["starts"] - new["final_evaluation_starts"]
    saved = 1 - new["total_gpu_hours"] / old["total_gpu_hours"]
    print(
        f"\ntargets (new): model starts per iteration incl. evaluation {max(per_iteration, last)} (<= 26), "
        f"last evaluation {new['final_evaluation_starts']} (<= 16), GPU-hours {saved:.1%} fewer than old "
        "(>= 35%)"
    )


if __name__ == "__main__":
    main()
