"""The combat job (``run.stage_layout=combat``): one task generates both answers of its shard's matches and
has the other players judge them with the engine it loaded once.

It writes exactly the records of a generate task and a judge task of the same shard (``generate/shard_*``
and ``judge/shard_*``, chunk by chunk in their ``.parts`` folders), so it resumes as they do: a task
preempted while judging finds the shard's generations published and continues after its last saved
judge chunk.
"""

from __future__ import annotations

from sparta_hpc.jobs.common import LazyEngine, open_run
from sparta_hpc.jobs.generate import generate_records, shard_generations
from sparta_hpc.jobs.judge import judge_records


def combat_shard(run_root: str, t: int, shard: int) -> int:
    """Generate, then judge, every match of generate shard ``shard`` with one engine. Returns the number of
    records written (generations and judgments), -1 when both were there already."""
    run, cfg = open_run(run_root)
    if run.shard(t, "judge", shard).exists():
        return -1
    engine = LazyEngine(cfg, run, t)
    made = -1
    if not run.shard(t, "generate", shard).exists():
        made = generate_records(run, cfg, t, shard, engine)
    judged = judge_records(run, cfg, t, shard, engine, shard_generations(run, t, shard))
    return max(made, 0) + judged if judged >= 0 else max(made, -1)
