"""What every node-side job shares: opening the run, seeds, sharding, loading an engine, chunked progress.

Jobs take paths and numbers, never models. Generation, judging and evaluation save finished chunks as they go,
so a preempted or killed job that runs again continues after its last saved chunk.
"""

from __future__ import annotations

import hashlib
import os
import shutil
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from sparta_hpc.config import SpartaConfig, load_saved_config
from sparta_hpc.engines.base import ModelSpec, Request
from sparta_hpc.errors import RecordError
from sparta_hpc.files import jsonl_text, parse_records, publish_text, read_jsonl
from sparta_hpc.method.types import Match
from sparta_hpc.store.models import read_models, user_paths
from sparta_hpc.store.progress import UnitProgress
from sparta_hpc.store.rundir import RunDir


def stable_seed(*parts: object) -> int:
    """A 31-bit seed from any parts, equal across processes and machines."""
    digest = hashlib.sha256("/".join(str(p) for p in parts).encode()).digest()
    return int.from_bytes(digest[:4], "big") & 0x7FFFFFFF


def open_run(run_root: str) -> tuple[RunDir, SpartaConfig]:
    run = RunDir(run_root)
    return run, load_saved_config(run.config_file)


def attempt_id() -> str:
    """This job's id as its scheduler names it: a requeued job keeps it, a resubmitted unit gets a new one
    (``pid-N`` in the launcher's own process)."""
    env = os.environ
    if "SLURM_ARRAY_JOB_ID" in env and "SLURM_ARRAY_TASK_ID" in env:
        return f"{env['SLURM_ARRAY_JOB_ID']}_{env['SLURM_ARRAY_TASK_ID']}"
    if "SLURM_JOB_ID" in env:
        return env["SLURM_JOB_ID"]
    if "SUBMITIT_LOCAL_JOB_ID" in env:
        return f"local-{env['SUBMITIT_LOCAL_JOB_ID']}"
    return f"pid-{os.getpid()}"


def split_evenly(items: Sequence[Any], num_shards: int, shard: int) -> list[Any]:
    """Contiguous shard ``shard`` of ``num_shards`` near-equal parts (earlier shards take the remainder)."""
    size, extra = divmod(len(items), num_shards)
    start = shard * size + min(shard, extra)
    return list(items[start : start + size + (1 if shard < extra else 0)])


def player_specs(
    players: dict[str, dict[str, str | None]],
    trusted_bases: set[str] = frozenset(),  # type: ignore[assignment]
) -> list[ModelSpec]:
    """Engine specs of ``{name: {base, adapter}}``; a base in ``trusted_bases`` may run its own code."""
    return [
        ModelSpec(
            name=n, base=str(p["base"]), adapter=p["adapter"], trust_remote_code=p["base"] in trusted_bases
        )
        for n, p in players.items()
    ]


def trusted_bases(cfg: SpartaConfig) -> set[str]:
    """The base directories of the models whose config entry sets ``trust_remote_code`` (players and the eval
    judge), as ``prepare_models`` resolved them (a hub id's snapshot, a GGUF file's conversion)."""
    from sparta_hpc.engines.sources import resolve_base

    models = [*cfg.models, *([cfg.eval.judge_model] if cfg.eval.judge_model else [])]
    return {b for m in models if m.trust_remote_code for b in (m.base, resolve_base(m.base))}


def players_at(run: RunDir, t: int, cfg: SpartaConfig) -> dict[str, dict[str, str | None]]:
    """Each player's base and adapter at the start of iteration t, as absolute paths of this run directory."""
    return read_models(run, run.players(t), user_paths([*cfg.models, cfg.eval.judge_model]))


def load_engine(cfg: SpartaConfig, players: dict[str, dict[str, str | None]]) -> Any:
    specs = player_specs(players, trusted_bases(cfg))
    if cfg.engine.kind == "vllm":
        from sparta_hpc.engines.vllm import VLLMEngine

        return VLLMEngine(specs, cfg.engine)
    from sparta_hpc.engines.hf import HFEngine

    return HFEngine(specs, dtype=cfg.engine.dtype, batch_size=cfg.engine.batch_size)


class LazyEngine:
    """A job's engine, loaded on first use (a job whose chunks are all saved loads nothing) and then shared by
    everything the job runs: a combat task generates and judges with one load."""

    def __init__(self, cfg: SpartaConfig, run: RunDir, t: int) -> None:
        self.cfg, self.run, self.t = cfg, run, t
        self._engine: Any = None

    def get(self, stage: str) -> Any:
        if self._engine is None:
            set_threads(self.cfg, stage)
            self._engine = load_engine(self.cfg, players_at(self.run, self.t, self.cfg))
        return self._engine


def engine_chunk(cfg: SpartaConfig, chunk_size: int) -> int:
    """Requests per saved chunk as the engine gets them: vLLM batches across a chunk (up to
    ``engine.max_num_seqs`` sequences at once), so it gets at least ``engine.vllm_min_chunk``; HF keeps
    ``chunk_size`` (it batches ``engine.batch_size`` at a time anyway)."""
    return max(chunk_size, cfg.engine.vllm_min_chunk) if cfg.engine.kind == "vllm" else chunk_size


def has_cuda() -> bool:
    import torch

    return torch.cuda.is_available()


def set_threads(cfg: SpartaConfig, stage: str) -> None:
    """As many torch threads as the stage's jobs have CPUs (the same inline, locally and on Slurm).

    OMP_NUM_THREADS too, unless set: accelerate otherwise sets torch's threads to all physical cores in a
    Slurm job, and two jobs sharing a node then oversubscribe it (DPO ran 30x slower on 2 cores).
    """
    import torch

    threads = max(1, min(cfg.cluster.resources(stage).cpus_per_task, os.cpu_count() or 1))
    os.environ.setdefault("OMP_NUM_THREADS", str(threads))
    torch.set_num_threads(threads)


def run_chunks(
    parts: Path,
    out: Path,
    requests: list[Request],
    chunk_size: int,
    compute: Callable[[list[Request]], list[dict[str, Any]]],
    progress: UnitProgress | None = None,
) -> list[dict[str, Any]] | None:
    """Compute every chunk not saved yet (one file per chunk), then return all chunk results in order.

    ``compute`` returns one record per request. Chunks are published once (``publish_text``): another attempt
    at the same unit that saved a chunk first keeps it, with the same content. A saved chunk that is not one
    JSON record per request (truncated, emptied, overwritten by a failing disk) is removed and computed again,
    so it never reaches the unit's output. ``None`` when that attempt has published the unit's output ``out``
    meanwhile: there is nothing left to do. ``progress`` counts every chunk, found saved or computed (it never
    changes a record).
    """
    chunks = [requests[i : i + chunk_size] for i in range(0, len(requests), chunk_size)]
    saved = sum((parts / f"chunk_{i:05d}.jsonl").exists() for i in range(len(chunks)))
    if saved:
        print(f"{parts}: resuming after {saved}/{len(chunks)} saved chunks", flush=True)
    results: list[dict[str, Any]] = []
    for i, chunk in enumerate(chunks):
        path = parts / f"chunk_{i:05d}.jsonl"
        if out.exists():
            return _published_elsewhere(parts)
        records = _saved_chunk(path, len(chunk))
        found = records is not None
        if records is None:
            records = compute(chunk)
            if out.exists():
                return _published_elsewhere(parts)
            try:
                if not publish_text(path, jsonl_text(records)):  # another attempt saved it first: keep that
                    records = _saved_chunk(path, len(chunk)) or records
            except FileNotFoundError:  # the chunks were removed under us: that attempt published the unit
                if out.exists():
                    return _published_elsewhere(parts)
                raise
        results += records
        if progress is not None:
            progress.advance(len(chunk), found=found)
    return results


def num_chunks(num_requests: int, chunk_size: int) -> int:
    """How many chunks ``run_chunks`` cuts ``num_requests`` requests into."""
    return -(-num_requests // chunk_size)


def unit_progress(
    run: RunDir, t: int, stage: str, unit: str, num_requests: int, chunk_size: int
) -> UnitProgress:
    """The progress file of one generate or judge shard, written at once (0 done)."""
    chunks = num_chunks(num_requests, chunk_size)
    return UnitProgress.open(run, t, stage, unit, attempt_id(), chunks, num_requests)


def _published_elsewhere(parts: Path) -> list[dict[str, Any]] | None:
    """Another attempt published the unit: remove the chunks (this attempt may have saved one after that
    attempt removed them); None, the value of ``run_chunks`` then."""
    shutil.rmtree(parts, ignore_errors=True)
    return None


def _saved_chunk(path: Path, num_requests: int) -> list[dict[str, Any]] | None:
    """The records of a saved chunk; None when there is none, or it is corrupt (then it is removed)."""
    try:
        records = read_jsonl(path)
    except FileNotFoundError:
        return None
    except (RecordError, UnicodeDecodeError) as e:
        problem = str(e).split(": ", 1)[-1]
    else:
        if len(records) == num_requests:
            return records
        problem = f"{len(records)} records for {num_requests} requests"
    print(f"{path}: corrupt ({problem}); computing it again", flush=True)
    path.unlink(missing_ok=True)
    return None


def publish_records(out: Path, parts: Path, records: list[dict[str, Any]]) -> int:
    """Publish a unit's records unless another attempt did, and remove its chunks; the number of records
    this call published (-1: another attempt had published them)."""
    published = publish_text(out, jsonl_text(records))
    shutil.rmtree(parts, ignore_errors=True)
    return len(records) if published else -1


def sample_id(match_id: str, sample: int) -> str:
    """Answer ``sample`` of a self match (``run.mode=self_rewarding``): its generation's match id."""
    return f"{match_id}.s{sample}"


def shard_matches(run: RunDir, t: int, num_shards: int, shard: int) -> list[Match]:
    return split_evenly(parse_records(run.matches(t), Match.from_dict), num_shards, shard)
