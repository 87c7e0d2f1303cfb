"""The generate job: both players of every match of a shard answer its prompt."""

from __future__ import annotations

from typing import Any

from sparta_hpc.config import SpartaConfig
from sparta_hpc.engines.base import Request, Sampling
from sparta_hpc.files import parse_records
from sparta_hpc.jobs.common import (
    LazyEngine,
    engine_chunk,
    open_run,
    publish_records,
    run_chunks,
    sample_id,
    shard_matches,
    stable_seed,
    unit_progress,
)
from sparta_hpc.method.types import Generation, Match
from sparta_hpc.store.rundir import RunDir


def generate_requests(cfg: SpartaConfig, t: int, matches: list[Match]) -> list[Request]:
    """Both players of every match answer its prompt; in ``run.mode=self_rewarding`` the one player of every
    self match answers it ``selfreward.num_samples`` times (request ``<sample id>/<player>``)."""
    if cfg.run.mode == "self_rewarding":
        return [
            Request(
                request_id=f"{sample_id(m.match_id, s)}/{m.players[0]}",
                model=m.players[0],
                prompt=m.prompt,
                seed=stable_seed(cfg.run.seed, t, m.prompt_id, m.players[0], s),
            )
            for m in matches
            for s in range(cfg.selfreward.num_samples)
        ]
    return [
        Request(
            request_id=f"{m.match_id}/{p}",
            model=p,
            prompt=m.prompt,
            seed=stable_seed(cfg.run.seed, t, m.match_id, p),
        )
        for m in matches
        for p in m.players
    ]


def generate_shard(run_root: str, t: int, shard: int) -> int:
    """Both players of every match of the shard answer its prompt. Returns the number of generations."""
    run, cfg = open_run(run_root)
    if run.shard(t, "generate", shard).exists():
        return -1
    return generate_records(run, cfg, t, shard, LazyEngine(cfg, run, t))


def generate_records(run: RunDir, cfg: SpartaConfig, t: int, shard: int, engine: LazyEngine) -> int:
    """Generate the shard's records chunk by chunk with ``engine`` (resuming after the saved chunks) and
    publish them; the number published, -1 when another attempt published them."""
    requests = generate_requests(cfg, t, shard_matches(run, t, cfg.generate.num_shards, shard))
    g = cfg.generate
    sampling = Sampling(
        max_new_tokens=g.max_new_tokens, temperature=g.temperature, top_k=g.top_k, top_p=g.top_p
    )

    def compute(chunk: list[Request]) -> list[dict[str, Any]]:
        return [
            Generation(
                match_id=r.request_id.rsplit("/", 1)[0],
                player=r.model,
                response=c.text,
                num_tokens=c.num_new_tokens,
            ).to_dict()
            for r, c in zip(chunk, engine.get("generate").generate(chunk, sampling), strict=True)
        ]

    out, parts = run.shard(t, "generate", shard), run.shard_parts(t, "generate", shard)
    chunk = engine_chunk(cfg, g.chunk_size)
    progress = unit_progress(run, t, "generate", str(shard), len(requests), chunk)
    records = run_chunks(parts, out, requests, chunk, compute, progress)
    published = -1 if records is None else publish_records(out, parts, records)
    progress.finish()
    return published


def read_generations(run: RunDir, t: int, num_shards: int) -> dict[tuple[str, str], str]:
    out: dict[tuple[str, str], str] = {}
    for shard in range(num_shards):
        out |= shard_generations(run, t, shard)
    return out


def shard_generations(run: RunDir, t: int, shard: int) -> dict[tuple[str, str], str]:
    """``{(match id, player): response}`` of one generate shard."""
    records = parse_records(run.shard(t, "generate", shard), Generation.from_dict)
    return {(g.match_id, g.player): g.response for g in records}
