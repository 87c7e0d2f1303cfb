"""``sparta-hpc rate``: re-score a finished iteration's judged matches under any rating variant, no model.

Reads judged matches, the ratings at the start of the iteration and (for static/dynamic competitor weights)
the ratings at the end of earlier iterations; checks all of it; then writes ``DIR/ratings.json`` and
``DIR/preferences.jsonl`` atomically. Any bad input is an error naming the file (and line) and writes nothing.
Formats: docs/formats.md, section "Method records".
"""

from __future__ import annotations

import argparse
import math
import sys
from collections.abc import Sequence
from dataclasses import fields
from pathlib import Path
from typing import Any

from sparta_hpc.config import load_section
from sparta_hpc.errors import ConfigError, SpartaError
from sparta_hpc.files import jsonl_lines, read_json, write_json, write_jsonl
from sparta_hpc.method.judging import parse_score
from sparta_hpc.method.ratings import RateResult, check_names, rate_iteration
from sparta_hpc.method.settings import PROFILES, RateConfig
from sparta_hpc.method.types import JudgedMatch, PlayerRating, RatingTable


class RescoreError(SpartaError, ValueError):
    """An input of ``sparta-hpc rate`` is invalid; the message names the file and line, or the key."""


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """The options of ``sparta-hpc rate``."""
    parser.add_argument(
        "--matches", required=True, type=Path, help="judged.jsonl, one match per line in order"
    )
    parser.add_argument(
        "--ratings", required=True, type=Path, help="start.json: ratings at the iteration start"
    )
    parser.add_argument("--iteration", required=True, type=int, help="0-based index t of the iteration")
    parser.add_argument(
        "--history",
        type=Path,
        help="JSON list, entry u = ratings at the end of iteration u (for static/dynamic weights, t >= 2)",
    )
    parser.add_argument(
        "--profile", choices=sorted(PROFILES), default="paper", help="preset (default: paper)"
    )
    parser.add_argument("--out", required=True, type=Path, help="output directory")
    parser.add_argument(
        "overrides", nargs="*", metavar="KEY=VALUE", help="rate settings: rate.KEY=V or KEY=V"
    )


def main(args: argparse.Namespace) -> int:
    """Run ``sparta-hpc rate``; 0 on success, 2 on invalid input (nothing written)."""
    try:
        cfg = rate_config(args.profile, args.overrides)
        if args.iteration < 0:
            raise RescoreError(f"--iteration {args.iteration}: must be >= 0")
        start = read_ratings(args.ratings)
        history = read_history(args.history) if args.history is not None else []
        judged = read_judged(args.matches, start)
        try:
            result = rate_iteration(judged, start, history, cfg, args.iteration)
        except ValueError as e:  # only the rating history can still be wrong here
            raise RescoreError(f"{args.history or '--history (not given)'}: {e}") from None
    except (ValueError, OSError) as e:
        print(f"sparta-hpc rate: error: {e}", file=sys.stderr)
        return 2
    write_json(args.out / "ratings.json", {p: r.to_dict() for p, r in result.ratings.items()})
    write_jsonl(args.out / "preferences.jsonl", (pair.to_dict() for pair in result.pairs))
    print(summary(result, cfg))
    return 0


def rate_config(profile: str, overrides: Sequence[str]) -> RateConfig:
    """The profile's ``rate.*`` presets, then ``rate.KEY=VALUE`` or ``KEY=VALUE`` overrides, merged by the
    config loader (``config.load_section``: the values ``sparta-hpc run`` accepts for these keys)."""
    if profile not in PROFILES:
        raise RescoreError(f"unknown profile {profile!r}; valid profiles: {', '.join(PROFILES)}")
    names = [f.name for f in fields(RateConfig)]
    given: dict[str, tuple[str, str]] = {}  # rate.NAME: (key, value) as given; a repeated key's last wins
    for item in overrides:
        key, sep, text = item.partition("=")
        name = key.removeprefix("rate.")
        if not sep or name not in names:
            raise RescoreError(
                f"unknown setting {item!r}: give rate.KEY=VALUE or KEY=VALUE; valid keys: {', '.join(names)}"
            )
        given[f"rate.{name}"] = (key, text)
    try:
        cfg = load_section("rate", profile, [f"{dotted}={text}" for dotted, (_, text) in given.items()])
    except ConfigError as e:
        if e.key not in given:
            raise
        key, text = given[e.key]
        kind = type(getattr(RateConfig(), e.key.removeprefix("rate.")))
        expected = "true or false" if kind is bool else f"a value of type {kind.__name__}"
        raise RescoreError(f"{key}={text!r}: expected {expected}") from None
    for dotted, (key, text) in given.items():
        value = getattr(cfg, dotted.removeprefix("rate."))
        if isinstance(value, float) and not math.isfinite(value):
            raise RescoreError(f"{key}={text!r}: expected a finite number")
    assert isinstance(cfg, RateConfig)
    return cfg


def read_ratings(path: Path) -> RatingTable:
    """A ratings file ``{player: {"rating", "deviation", "deltas"?}}``."""
    data = read_json(path)
    if not isinstance(data, dict) or not data:
        raise RescoreError(f"{path}: expected a non-empty object {{player: {{rating, deviation, deltas}}}}")
    table: RatingTable = {}
    for name, entry in data.items():
        try:
            table[name] = PlayerRating.from_dict(_object(entry))
        except (TypeError, ValueError) as e:
            raise RescoreError(f"{path}: player {name!r}: {e}") from None
    return table


def read_history(path: Path) -> list[dict[str, float]]:
    """A list whose entry u maps each player to its rating at the end of iteration u.

    An entry's values are numbers, or rating entries as in a ratings file (only ``rating`` is used).
    """
    data = read_json(path)
    if not isinstance(data, list):
        raise RescoreError(f"{path}: expected a JSON list, entry u = ratings at the end of iteration u")
    history = []
    for u, entry in enumerate(data):
        try:
            ratings = {
                name: v if isinstance(v, int | float) else PlayerRating.from_dict(_object(v)).rating
                for name, v in _object(entry).items()
            }
        except (TypeError, ValueError) as e:
            raise RescoreError(f"{path}: entry {u}: {e}") from None
        bad = [n for n, v in ratings.items() if isinstance(v, bool) or not math.isfinite(v)]
        if bad:
            raise RescoreError(f"{path}: entry {u}: ratings of {bad} are not finite numbers")
        history.append({n: float(v) for n, v in ratings.items()})
    return history


def _object(x: Any) -> dict[str, Any]:
    if not isinstance(x, dict):
        raise ValueError(f"expected a JSON object, got {x!r}")
    return x


def read_judged(path: Path, start: RatingTable) -> list[JudgedMatch]:
    """Judged matches, one JSON object per line (blank lines skipped), checked against the rated players."""
    judged: list[JudgedMatch] = []
    first_line: dict[str, int] = {}
    for lineno, value in jsonl_lines(path, error=RescoreError):
        try:
            match = JudgedMatch.from_dict(_with_parsed_scores(_object(value)))
            check_names(match, start)
        except ValueError as e:
            raise RescoreError(f"{path}:{lineno}: {e}") from None
        if match.match_id in first_line:
            raise RescoreError(
                f"{path}:{lineno}: duplicate match_id {match.match_id!r} (first on line "
                f"{first_line[match.match_id]})"
            )
        first_line[match.match_id] = lineno
        judged.append(match)
    if not judged:
        raise RescoreError(f"{path}: no judged matches")
    return judged


def _with_parsed_scores(d: dict[str, Any]) -> dict[str, Any]:
    """Replace ``raw_judgments`` (judge outputs) by ``judgments`` (their scores, by ``parse_score``)."""
    if "raw_judgments" not in d:
        return d
    if "judgments" in d:
        raise ValueError("give either 'judgments' or 'raw_judgments', not both")
    judgments = {}
    for judge, texts in _object(d["raw_judgments"]).items():
        if texts is not None and not (
            isinstance(texts, list)
            and len(texts) == 2
            and all(t is None or isinstance(t, str) for t in texts)
        ):
            raise ValueError(f"raw_judgments[{judge!r}] must be null or two texts (or nulls), got {texts!r}")
        judgments[judge] = None if texts is None else [parse_score(t) for t in texts]
    return {k: v for k, v in d.items() if k != "raw_judgments"} | {"judgments": judgments}


def summary(result: RateResult, cfg: RateConfig) -> str:
    """A few lines for the terminal: what was rated and how the judges did."""
    lines = [
        f"rated {result.num_matches} matches ({result.num_skipped} skipped: no counted judge) with "
        f"rate.gain={cfg.gain} rate.weights={cfg.weights} rate.failed_judgment={cfg.failed_judgment}; "
        f"{len(result.pairs)} preference pairs"
        + (" (uniform judge weights: rate.aggregation=uniform)" if cfg.aggregation == "uniform" else "")
    ]
    if cfg.weights != "normal":
        lines.append(f"  competitor weights: {result.weights}")
    lines += [
        f"  judge {j}: {c['usable']} usable, {c['failed']} failed, {c['missing']} missing"
        for j, c in result.judge_counts.items()
    ]
    return "\n".join(lines)


if __name__ == "__main__":
    _parser = argparse.ArgumentParser(prog="sparta-hpc rate", description=__doc__.splitlines()[0])
    add_arguments(_parser)
    sys.exit(main(_parser.parse_args()))
