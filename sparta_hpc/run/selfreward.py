"""The self-rewarding baseline (``run.mode=self_rewarding``): plan and rate of its iteration.

It reuses the SPARTA stages. Plan writes one *self match* per (prompt, player), ``players = (p, p)``;
generate has the player answer it ``selfreward.num_samples`` times; judge has the player score each of its
own answers with the judge prompt; rate (here) takes each self match's best vs worst answer as a preference
pair of that player alone; train trains every player on its own pairs. No reputation and no match-making:
ratings stay at their initial values.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from sparta_hpc.config import SpartaConfig
from sparta_hpc.files import parse_records, write_json, write_jsonl
from sparta_hpc.jobs.common import sample_id
from sparta_hpc.jobs.generate import read_generations
from sparta_hpc.jobs.judge import read_self_scores
from sparta_hpc.method.types import Match, PreferencePair, Score
from sparta_hpc.store.rundir import RunDir

OUTCOMES = ("pair", "tie", "identical", "unusable")
"""What a self match gives: a pair; or nothing, because its best and worst usable scores are equal, the
best and worst answers are the same text, or fewer than two of its answers got a score."""


def self_matches(prompts: Sequence[tuple[str, str]], players: Sequence[str], t: int) -> list[Match]:
    """One self match per ``(prompt_id, prompt)`` and player, prompt by prompt, players in config order."""
    return [
        Match(
            match_id=f"t{t:03d}-s{index:06d}",
            iteration=t,
            index=index,
            prompt_id=prompt_id,
            prompt=prompt,
            players=(player, player),
        )
        for index, ((prompt_id, prompt), player) in enumerate(
            (item, player) for item in prompts for player in players
        )
    ]


def select_pair(
    match: Match, responses: Sequence[str], scores: Sequence[Score]
) -> tuple[PreferencePair | None, str]:
    """The best vs worst answer of a self match by its player's own scores, and the outcome (``OUTCOMES``).

    Answers whose judgment failed (``None``) are left out. Among equal scores the earliest answer is the best
    and the earliest the worst, so the choice is deterministic.
    """
    usable = [(s, i) for i, s in enumerate(scores) if s is not None]
    if len(usable) < 2:
        return None, "unusable"
    best = min(usable, key=lambda x: (-x[0], x[1]))
    worst = min(usable, key=lambda x: (x[0], x[1]))
    if best[0] == worst[0]:
        return None, "tie"
    if responses[best[1]] == responses[worst[1]]:
        return None, "identical"
    player = match.players[0]
    return PreferencePair(
        match_id=match.match_id,
        prompt=match.prompt,
        chosen=responses[best[1]],
        rejected=responses[worst[1]],
        chosen_model=player,
        rejected_model=player,
        margin=best[0] - worst[0],
        score_chosen=best[0],
        score_rejected=worst[0],
    ), "pair"


def rate(t: int, cfg: SpartaConfig, run: RunDir, initial: dict[str, Any]) -> tuple[list[Any], dict[str, Any]]:
    """Each player's own pairs (``preferences/<player>.jsonl``), the self matches with their scores, the
    ratings unchanged (``initial``: the JSON form of the ratings at the start) and the report."""
    matches = parse_records(run.matches(t), Match.from_dict)
    responses = read_generations(run, t, cfg.generate.num_shards)
    scores = read_self_scores(run, t, cfg.judge_shards)
    players = cfg.player_names
    pairs: dict[str, list[dict[str, Any]]] = {p: [] for p in players}
    outcomes = {p: dict.fromkeys(OUTCOMES, 0) for p in players}
    counts = {p: {"usable": 0, "failed": 0} for p in players}
    judged = []
    for m in matches:
        player, ids = m.players[0], [sample_id(m.match_id, s) for s in range(cfg.selfreward.num_samples)]
        answers, own = [responses[(i, player)] for i in ids], [scores[i] for i in ids]
        pair, outcome = select_pair(m, answers, own)
        outcomes[player][outcome] += 1
        counts[player]["usable"] += sum(s is not None for s in own)
        counts[player]["failed"] += sum(s is None for s in own)
        if pair is not None:
            pairs[player].append(pair.to_dict())
        judged.append(
            {"match_id": m.match_id, "prompt": m.prompt, "player": player}
            | {"responses": answers, "scores": own, "outcome": outcome}
        )
    for p in players:
        write_jsonl(run.player_preferences(t, p), pairs[p])
    write_jsonl(run.self_judged(t), judged)
    write_json(run.ratings(t), initial)
    report = {
        "num_pairs": sum(len(v) for v in pairs.values()),
        "mode": "self_rewarding",
        "num_matches": len(matches),
        "pairs_per_player": {p: len(pairs[p]) for p in players},
        "outcomes": outcomes,
        "judge_counts": counts,
    }
    write_json(run.rate_report(t), report)
    outputs = [run.self_judged(t), run.ratings(t), run.rate_report(t)]
    failed = sum(c["failed"] for c in counts.values())
    return outputs + [run.player_preferences(t, p) for p in players], {
        "pairs": report["num_pairs"],
        "failed_judgments": failed,
        "ratings": "unchanged (self_rewarding)",
    }
