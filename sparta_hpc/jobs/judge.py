"""The judge job: every non-competing player scores both responses of every match of a shard."""

from __future__ import annotations

from typing import Any

from sparta_hpc.config import SpartaConfig
from sparta_hpc.engines.base import Request, Sampling
from sparta_hpc.files import read_jsonl
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
from sparta_hpc.jobs.generate import read_generations
from sparta_hpc.method import judging
from sparta_hpc.method.types import Judgment, Match, Score
from sparta_hpc.store.rundir import RunDir
from sparta_hpc.tasks.own import read_rubric
from sparta_hpc.tasks.prompts import render_judge


def judge_requests(
    cfg: SpartaConfig, t: int, matches: list[Match], responses: dict[tuple[str, str], str]
) -> list[Request]:
    """Every non-competing player judges both responses of every match, one request per response."""
    prefix = judging.SCORE_PREFIX if cfg.judge.method == "logprob" else ""
    rubric = read_rubric(cfg.judge.rubric_file, "judge.rubric_file")
    if cfg.run.mode == "self_rewarding":
        return _self_requests(cfg, t, matches, responses, prefix, rubric)
    requests = []
    for m in matches:
        for judge in cfg.player_names:
            if judge in m.players:
                continue
            for side, player in zip("ab", m.players, strict=True):
                requests.append(
                    Request(
                        request_id=f"{m.match_id}/{judge}/{side}",
                        model=judge,
                        prompt=_judge_prompt(cfg, rubric, m.prompt, responses[(m.match_id, player)]),
                        seed=stable_seed(cfg.run.seed, t, m.match_id, judge, side),
                        assistant_prefix=prefix,
                        max_prompt_tokens=cfg.judge.max_prompt_tokens,
                    )
                )
    return requests


def _judge_prompt(
    cfg: SpartaConfig, rubric: str | None, question: str, response: str, self_judge: bool = False
) -> str:
    """The judge prompt: ``judge.rubric_file``'s text when set, else the built-in prompt (with
    ``judge.rubric`` in tournaments, its default in self-rewarding judging)."""
    if rubric is not None:
        return render_judge(rubric, question, response)
    return judging.judge_prompt(question, response, *(() if self_judge else (cfg.judge.rubric,)))


def judge_shard(run_root: str, t: int, shard: int) -> int:
    """Score both responses of every match of the shard by every other player. Returns judgments written."""
    run, cfg = open_run(run_root)
    if run.shard(t, "judge", shard).exists():
        return -1
    responses = read_generations(run, t, cfg.generate.num_shards)
    return judge_records(run, cfg, t, shard, LazyEngine(cfg, run, t), responses)


def judge_records(
    run: RunDir,
    cfg: SpartaConfig,
    t: int,
    shard: int,
    engine: LazyEngine,
    responses: dict[tuple[str, str], str],
) -> int:
    """Judge the shard's matches chunk by chunk with ``engine`` (resuming after the saved chunks) and publish
    the judgments; the number published, -1 when another attempt published them."""
    matches = shard_matches(run, t, cfg.judge_shards, shard)
    requests = judge_requests(cfg, t, matches, responses)
    j = cfg.judge
    sampling = Sampling(
        max_new_tokens=j.max_new_tokens,
        temperature=j.temperature,
        top_k=j.top_k,
        top_p=j.top_p,
        json_score=cfg.engine.structured_judge,
    )

    def compute(chunk: list[Request]) -> list[dict[str, Any]]:
        if j.method == "logprob":
            return [
                {"request_id": r.request_id, "score": e.score, "raw": ""}
                for r, e in zip(chunk, engine.get("judge").expected_scores(chunk), strict=True)
            ]
        return [
            {"request_id": r.request_id, "score": judging.parse_score(c.text), "raw": c.text}
            for r, c in zip(chunk, engine.get("judge").generate(chunk, sampling), strict=True)
        ]

    out, parts = run.shard(t, "judge", shard), run.shard_parts(t, "judge", shard)
    chunk = engine_chunk(cfg, j.chunk_size)
    progress = unit_progress(run, t, "judge", str(shard), len(requests), chunk)
    results = run_chunks(parts, out, requests, chunk, compute, progress)
    if results is None:
        published = -1
    elif cfg.run.mode == "self_rewarding":
        published = publish_records(out, parts, [_self_record(r) for r in results])
    else:
        published = publish_records(out, parts, [judgment.to_dict() for judgment in _pair_sides(results)])
    progress.finish()
    return published


def _self_requests(
    cfg: SpartaConfig,
    t: int,
    matches: list[Match],
    responses: dict[tuple[str, str], str],
    prefix: str,
    rubric: str | None,
) -> list[Request]:
    """``run.mode=self_rewarding``: the player of every self match scores each of its own answers."""
    return [
        Request(
            request_id=f"{sid}/{player}",
            model=player,
            prompt=_judge_prompt(cfg, rubric, m.prompt, responses[(sid, player)], self_judge=True),
            seed=stable_seed(cfg.run.seed, t, sid, player, "self"),
            assistant_prefix=prefix,
            max_prompt_tokens=cfg.judge.max_prompt_tokens,
        )
        for m in matches
        for player in m.players[:1]
        for sid in (sample_id(m.match_id, s) for s in range(cfg.selfreward.num_samples))
    ]


def _self_record(result: dict[str, Any]) -> dict[str, Any]:
    """A self judgment ``{sample_id, judge, score, raw}`` (docs/formats.md) of a request ``sample/judge``."""
    sid, judge = result["request_id"].rsplit("/", 1)
    return {"sample_id": sid, "judge": judge, "score": result["score"], "raw": result["raw"]}


def read_self_scores(run: RunDir, t: int, num_shards: int) -> dict[str, Score]:
    """``{sample id: score}`` of every self judgment of iteration t (``None``: the judgment failed)."""
    out: dict[str, Score] = {}
    for shard in range(num_shards):
        for r in read_jsonl(run.shard(t, "judge", shard)):
            out[str(r["sample_id"])] = None if r["score"] is None else float(r["score"])
    return out


def _pair_sides(results: list[dict[str, Any]]) -> list[Judgment]:
    """Join the per-response results ``match/judge/a`` and ``match/judge/b`` into one Judgment each."""
    by_id = {r["request_id"]: r for r in results}
    judgments = []
    for r in results:
        match_id, judge, side = r["request_id"].rsplit("/", 2)
        if side != "a":
            continue
        b = by_id[f"{match_id}/{judge}/b"]
        judgments.append(
            Judgment(
                match_id=match_id, judge=judge, scores=(r["score"], b["score"]), raw=(r["raw"], b["raw"])
            )
        )
    return judgments
