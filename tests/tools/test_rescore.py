"""``sparta-hpc rate``: the file side of the rating stage (sparta_hpc/tools/rescore.py)."""

import argparse
import json
import math
import re
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from sparta_hpc.method.ratings import rate_iteration
from sparta_hpc.method.settings import RateConfig
from sparta_hpc.method.types import JudgedMatch, PlayerRating
from sparta_hpc.tools import rescore

PLAYERS = ["a", "b", "c", "d"]


def line(mid: str, first: str, second: str, /, **judgments: Any) -> dict[str, Any]:
    return {
        "match_id": mid,
        "prompt": f"q{mid}",
        "players": [first, second],
        "responses": [f"{first}:{mid}", f"{second}:{mid}"],
        "judgments": judgments,
    }


MATCHES = [
    line("1", "a", "b", c=[8, 3], d=[7, 5]),
    line("2", "c", "d", a=[2, 9], b=[None, 6]),
    line("3", "b", "c", a=[5, 5], d=None),
    line("4", "d", "a", b=[6, 6], c=[6, 6]),
    line("5", "a", "c", b=[9, 1], d=[10, 2]),
]
START = {p: {"rating": 100.0 + i, "deviation": 0.5, "deltas": [0.1 * i, -0.2]} for i, p in enumerate(PLAYERS)}


def write(tmp_path: Path, name: str, content: Any) -> Path:
    path = tmp_path / name
    if name.endswith(".jsonl"):
        path.write_text("".join(json.dumps(x) + "\n" for x in content))
    else:
        path.write_text(json.dumps(content))
    return path


def run(tmp_path: Path, *extra: str, matches: Any = MATCHES, start: Any = START) -> tuple[int, Path]:
    parser = argparse.ArgumentParser()
    rescore.add_arguments(parser)
    out = tmp_path / "out"
    argv = [
        "--matches",
        str(write(tmp_path, "judged.jsonl", matches)),
        "--ratings",
        str(write(tmp_path, "start.json", start)),
        "--out",
        str(out),
        *extra,
    ]
    if "--iteration" not in extra:
        argv += ["--iteration", "0"]
    return rescore.main(parser.parse_args(argv)), out


def read_outputs(out: Path) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    ratings = json.loads((out / "ratings.json").read_text())
    pairs = [json.loads(x) for x in (out / "preferences.jsonl").read_text().splitlines()]
    return ratings, pairs


def test_rate_writes_ratings_and_preferences(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    rc, out = run(tmp_path)
    assert rc == 0
    ratings, pairs = read_outputs(out)
    judged = [JudgedMatch.from_dict(m) for m in MATCHES]
    table = {p: PlayerRating.from_dict(v) for p, v in START.items()}
    expected = rate_iteration(judged, table, [], RateConfig(), 0)
    assert ratings == {p: r.to_dict() for p, r in expected.ratings.items()}  # floats survive JSON exactly
    assert sorted(ratings) == PLAYERS and set(ratings["a"]) == {"rating", "deviation", "deltas"}
    assert pairs == [p.to_dict() for p in expected.pairs]
    assert [p["match_id"] for p in pairs] == ["1", "2", "5"]  # 3 and 4 are ties
    assert set(pairs[0]) == {
        "match_id",
        "prompt",
        "chosen",
        "rejected",
        "chosen_model",
        "rejected_model",
        "margin",
        "score_chosen",
        "score_rejected",
    }
    assert pairs[0]["chosen"] == "a:1" and pairs[0]["rejected_model"] == "b"
    printed = capsys.readouterr().out
    assert "rated 5 matches" in printed and "judge b: 2 usable, 1 failed, 0 missing" in printed
    assert "judge d: 2 usable, 0 failed, 1 missing" in printed
    assert ratings["a"]["rating"] != START["a"]["rating"]


def test_raw_judgments_are_parsed_like_scores(tmp_path: Path) -> None:
    raw = [dict(m) for m in MATCHES]
    raw[0] = {k: v for k, v in MATCHES[0].items() if k != "judgments"} | {
        "raw_judgments": {"c": ['{"score": 8}', "Score: 3"], "d": ["7/10", '{"score": 5.9}']}
    }
    raw[1] = {k: v for k, v in MATCHES[1].items() if k != "judgments"} | {
        "raw_judgments": {
            "a": ["I give it 2/10", '{"score": 9}'],
            "b": ["7", '"score": 6'],
        }  # "7": failed parse
    }
    (tmp_path / "raw").mkdir()
    rc, out = run(tmp_path / "raw", matches=raw)
    rc_ref, out_ref = run(tmp_path)
    assert rc == rc_ref == 0
    assert read_outputs(out) == read_outputs(out_ref)


def test_profiles_and_overrides(tmp_path: Path) -> None:
    results = {}
    for name, extra in {
        "paper": (),
        "released": ("--profile", "released"),
        "schedule-dotted": ("rate.gain=schedule",),
        "schedule-bare": ("gain=schedule",),
        "neutral": ("rate.failed_judgment=neutral", "keep_deltas=false", "kappa=3"),
    }.items():
        (tmp_path / name).mkdir()
        rc, out = run(tmp_path / name, *extra)
        assert rc == 0, name
        results[name] = read_outputs(out)
    assert results["schedule-dotted"] == results["schedule-bare"]
    assert results["paper"] != results["released"] != results["schedule-bare"]
    neutral = results["neutral"][0]
    assert all(len(v["deltas"]) <= 3 for v in neutral.values())  # start deltas were dropped
    judged = [JudgedMatch.from_dict(m) for m in MATCHES]
    table = {p: PlayerRating.from_dict(v) for p, v in START.items()}
    cfg = RateConfig(failed_judgment="neutral", keep_deltas=False, kappa=3.0)
    assert neutral == {p: r.to_dict() for p, r in rate_iteration(judged, table, [], cfg, 0).ratings.items()}


def test_static_weights_need_history(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    rc, out = run(tmp_path, "--profile", "released", "--iteration", "3")
    assert rc == 2 and not out.exists()
    assert "--history" in capsys.readouterr().err
    history = [
        {p: 100.0 for p in PLAYERS},
        {"a": 90.0, "b": 95.0, "c": 99.0, "d": 120.0},  # numbers ...
        {p: {"rating": r, "deviation": 0.4} for p, r in zip(PLAYERS, (80.0, 85.0, 70.0, 99.0), strict=True)},
    ]  # ... or rating entries
    hist = write(tmp_path, "history.json", history)
    rc, out = run(tmp_path, "--profile", "released", "--iteration", "3", "--history", str(hist))
    assert rc == 0
    assert "competitor weights: {'a': 0.0, 'b': 1.0, 'c': 0.1, 'd': 1.0}" in capsys.readouterr().out


@pytest.mark.parametrize(
    ("matches", "where", "message"),
    [
        ([MATCHES[0], line("2", "a", "b") | {"iteration": 3}], ":2:", "unknown keys \\['iteration'\\]"),
        ([MATCHES[0], line("2", "a", "zed", c=[1, 2])], ":2:", "no rating for \\['zed'\\]"),
        ([line("1", "a", "b", c=[1, 2], q=[3, 4])], ":1:", "no rating for \\['q'\\]"),
        ([MATCHES[0], MATCHES[1], line("3", "a", "b", b=[1, 2])], ":3:", "judge 'b' is also a player"),
        ([line("1", "a", "b", c=[1, 12])], ":1:", "outside \\[0, 10\\]"),
        ([line("1", "a", "b", c=[1, "9"])], ":1:", "number or null"),
        ([MATCHES[0], MATCHES[1], MATCHES[0]], ":3:", "duplicate match_id '1' \\(first on line 1\\)"),
        ([MATCHES[0], [1, 2]], ":2:", "expected a JSON object"),
        ([MATCHES[0] | {"raw_judgments": {}}], ":1:", "not both"),
        (
            [{k: v for k, v in MATCHES[0].items() if k != "judgments"} | {"raw_judgments": {"c": ["x"]}}],
            ":1:",
            "two texts",
        ),
    ],
)
def test_bad_judged_lines_name_file_and_line_and_write_nothing(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], matches: Any, where: str, message: str
) -> None:
    rc, out = run(tmp_path, matches=matches)
    err = capsys.readouterr().err
    assert rc == 2 and not out.exists()
    assert f"judged.jsonl{where}" in err
    assert re.search(message, err), err


def test_bad_json_line_and_blank_lines(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = tmp_path / "judged.jsonl"
    path.write_text(json.dumps(MATCHES[0]) + "\n\n" + '{"match_id": \n')
    parser = argparse.ArgumentParser()
    rescore.add_arguments(parser)
    start = write(tmp_path, "start.json", START)
    args = parser.parse_args(
        ["--matches", str(path), "--ratings", str(start), "--iteration", "0", "--out", str(tmp_path / "o")]
    )
    assert rescore.main(args) == 2
    assert f"{path}:3: not valid JSON" in capsys.readouterr().err
    assert not (tmp_path / "o").exists()


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        (("plan.alpha=0.5",), "unknown setting 'plan.alpha=0.5'.*valid keys: .*failed_judgment"),
        (("rate.bogus=1",), "unknown setting"),
        (("gain",), "unknown setting 'gain'"),
        (("window=2.5",), "expected a value of type int"),
        (("kappa=inf",), "finite"),
        (("keep_deltas=maybe",), "true or false"),
        (("rate.gain=fast",), "rate.gain='fast' is not valid"),
        (("--iteration", "-1"), "must be >= 0"),
    ],
)
def test_bad_settings(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], extra: tuple[str, ...], message: str
) -> None:
    rc, out = run(tmp_path, *extra)
    assert rc == 2 and not out.exists()
    assert re.search(message, capsys.readouterr().err)


@pytest.mark.parametrize(
    ("start", "message"),
    [
        ([], "expected a non-empty object"),
        ({}, "expected a non-empty object"),
        ({**START, "a": {"rating": 100.0}}, "start.json: player 'a'"),
        ({**START, "a": {"rating": 100.0, "deviation": -1}}, "deviation > 0"),
        ({**START, "a": 100.0}, "player 'a': expected a JSON object"),
    ],
)
def test_bad_start_ratings(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], start: Any, message: str
) -> None:
    rc, out = run(tmp_path, start=start)
    assert rc == 2 and not out.exists()
    assert message in capsys.readouterr().err


def test_bad_history(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    for content, message in (
        ({"0": {}}, "expected a JSON list"),
        ([{"a": "high"}], "entry 0"),
        ([{}, {"a": math.inf}], "not finite"),
        ([{}, {"a": 1.0}], "no rating for these (iteration, player)"),
    ):
        hist = write(tmp_path, "history.json", content)
        rc, out = run(tmp_path, "--profile", "released", "--iteration", "2", "--history", str(hist))
        assert rc == 2 and not out.exists()
        assert message in capsys.readouterr().err


def test_missing_file(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    parser = argparse.ArgumentParser()
    rescore.add_arguments(parser)
    args = parser.parse_args(
        [
            "--matches",
            str(tmp_path / "nope.jsonl"),
            "--ratings",
            str(tmp_path / "s.json"),
            "--iteration",
            "0",
            "--out",
            str(tmp_path / "o"),
        ]
    )
    assert rescore.main(args) == 2
    assert "No such file" in capsys.readouterr().err


def test_module_entry_point(tmp_path: Path) -> None:
    m = write(tmp_path, "judged.jsonl", MATCHES)
    s = write(tmp_path, "start.json", START)
    cmd = [
        sys.executable,
        "-m",
        "sparta_hpc.tools.rescore",
        "--matches",
        str(m),
        "--ratings",
        str(s),
        "--iteration",
        "1",
        "--profile",
        "released",
        "--out",
        str(tmp_path / "o"),
        "eps=0.02",
    ]
    done = subprocess.run(cmd, capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    assert (tmp_path / "o" / "ratings.json").exists() and (tmp_path / "o" / "preferences.jsonl").exists()
    assert "rate.gain=schedule rate.weights=static" in done.stdout


def test_uniform_aggregation_override(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    rc, out = run(tmp_path, "--profile", "released", "rate.aggregation=uniform")
    assert rc == 0 and "uniform judge weights" in capsys.readouterr().out
    judged = [JudgedMatch.from_dict(m) for m in MATCHES]
    table = {p: PlayerRating.from_dict(v) for p, v in START.items()}
    cfg = RateConfig(gain="schedule", weights="static", failed_judgment="neutral", keep_deltas=False)
    uniform = rate_iteration(judged, table, [], RateConfig(**{**vars(cfg), "aggregation": "uniform"}), 0)
    assert read_outputs(out)[0] == {p: r.to_dict() for p, r in uniform.ratings.items()}
    assert uniform.ratings != rate_iteration(judged, table, [], cfg, 0).ratings
