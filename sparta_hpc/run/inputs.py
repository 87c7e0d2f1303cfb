"""The inputs of a stage, read from the records of earlier stages: the rating input, ratings and players
at the start and end of an iteration."""

from __future__ import annotations

from typing import Any

from sparta_hpc.config import SpartaConfig
from sparta_hpc.files import parse_records, read_json
from sparta_hpc.jobs.generate import read_generations
from sparta_hpc.method.types import JudgedMatch, Judgment, Match, PlayerRating, RatingTable
from sparta_hpc.store import models
from sparta_hpc.store.rundir import RunDir
from sparta_hpc.tasks import evaluation


def judged_matches(t: int, cfg: SpartaConfig, run: RunDir) -> list[JudgedMatch]:
    """Join matches, generations and judgments into the rating input, in match order."""
    matches = parse_records(run.matches(t), Match.from_dict)
    responses = read_generations(run, t, cfg.generate.num_shards)
    scores: dict[str, dict[str, Any]] = {m.match_id: {} for m in matches}
    for shard in range(cfg.judge.num_shards):
        for j in parse_records(run.shard(t, "judge", shard), Judgment.from_dict):
            scores[j.match_id][j.judge] = j.scores
    return [
        JudgedMatch(
            match_id=m.match_id,
            prompt=m.prompt,
            players=m.players,
            responses=(responses[(m.match_id, m.players[0])], responses[(m.match_id, m.players[1])]),
            judgments={
                judge: scores[m.match_id].get(judge) for judge in cfg.player_names if judge not in m.players
            },
        )
        for m in matches
    ]


def read_ratings(run: RunDir, t: int) -> RatingTable:
    return {p: PlayerRating.from_dict(r) for p, r in read_json(run.ratings(t)).items()}


def rating_history(run: RunDir, t: int) -> list[dict[str, float]]:
    """Entry u: every player's rating at the end of iteration u < t (what static/dynamic weights read)."""
    return [{p: r.rating for p, r in read_ratings(run, u).items()} for u in range(t)]


def ratings_at_start(t: int, cfg: SpartaConfig, run: RunDir) -> RatingTable:
    if t == 0:
        initial = PlayerRating(rating=cfg.rate.initial_rating, deviation=cfg.rate.initial_deviation)
        return {p: initial for p in cfg.player_names}
    return read_ratings(run, t - 1)


def own_paths(cfg: SpartaConfig) -> set[str]:
    """The model paths the config names (kept as they are when a record is read: ``store/models.py``)."""
    return models.user_paths([*cfg.models, cfg.eval.judge_model])


def players_after(t: int, cfg: SpartaConfig, run: RunDir) -> dict[str, dict[str, str | None]]:
    """Each player's base and adapter after iteration t: its trained adapter, or the old one if untrained."""
    return models.players_after(t, run, own_paths(cfg))


def eval_players(label: str, t: int, cfg: SpartaConfig, run: RunDir) -> dict[str, dict[str, str | None]]:
    """Each player's base and adapter as evaluated under ``label``: the initial ones, or those after t."""
    if label == evaluation.INITIAL:
        return models.read_models(run, run.players(0), own_paths(cfg))
    return players_after(t, cfg, run)
