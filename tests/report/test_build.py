"""On one tiny demo run: status, the event log, the report files, every plot and the HTML page in Chromium."""

from __future__ import annotations

import csv
import json
import os
import shutil
import struct
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from matplotlib import image as mpimg

from sparta_hpc.report import plots

ROOT = Path(__file__).resolve().parents[2]
MINI = ["run.iterations=2", "plan.num_prompts=8", "generate.max_new_tokens=8", "train.max_length=64"]
ENV = {**os.environ, "HF_HUB_OFFLINE": "1", "TOKENIZERS_PARALLELISM": "false"}
STAGES = ("plan", "generate", "judge", "rate", "train", "evaluate")

pytestmark = pytest.mark.slow


def cli(*args: str, timeout: float = 120) -> subprocess.CompletedProcess[str]:
    proc = subprocess.run(
        [sys.executable, "-m", "sparta_hpc.cli", *args],
        cwd=ROOT,
        env=ENV,
        capture_output=True,
        text=True,
        timeout=timeout,
    )
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-3000:]
    return proc


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    run = tmp_path_factory.mktemp("report") / "run"
    cmd = [sys.executable, str(ROOT / "launch.py"), "--cluster", "inline", "--run-dir", str(run), *MINI]
    proc = subprocess.run(cmd, cwd=ROOT, env=ENV, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    return run


@pytest.fixture(scope="module")
def report(run_dir: Path) -> Path:
    out = run_dir.parent / "report-out"
    proc = cli("report", str(run_dir), "--out", str(out))
    assert "report.html" in proc.stdout
    return out


def test_event_log_records_every_stage(run_dir: Path) -> None:
    events = [json.loads(line) for line in (run_dir / "events.jsonl").read_text().splitlines()]
    starts = [(e["iteration"], e["stage"]) for e in events if e["kind"] == "stage_start"]
    ends = [(e["iteration"], e["stage"]) for e in events if e["kind"] == "stage_end"]
    assert starts == ends == [(t, s) for t in range(2) for s in STAGES]
    assert all(e["time"].endswith("Z") for e in events)


def test_status_shows_every_stage_elapsed_time_and_the_leaderboard(run_dir: Path) -> None:
    doc = json.loads(cli("status", str(run_dir), "--json").stdout)
    assert (doc["done"], doc["iteration"], doc["launcher"]) == (True, 2, "finished")
    assert [(r["iteration"], r["stage"], r["state"]) for r in doc["stages"]] == [
        (t, s, "done") for t in range(2) for s in STAGES
    ]
    assert all(isinstance(r["seconds"], float) and r["preemptions"] == 0 for r in doc["stages"])
    assert doc["elapsed_seconds"] > 0
    ranked = [r["player"] for r in doc["leaderboard"]]
    assert ranked == sorted(doc["ratings"], key=lambda p: -doc["ratings"][p]["rating"])
    text = cli("status", str(run_dir)).stdout
    assert "(done)" in text and "leaderboard" in text and ranked[0] in text
    watched = cli("status", str(run_dir), "--watch", "0.1", "--json", timeout=30).stdout.splitlines()
    assert len(watched) == 1 and json.loads(watched[0])["done"] is True  # a finished run: print once


def test_report_writes_leaderboards_markdown_and_html(report: Path) -> None:
    board = json.loads((report / "leaderboard.json").read_text())
    assert [it["iteration"] for it in board["iterations"]] == [0, 1]
    for it in board["iterations"]:
        assert sum(r["wins"] + r["losses"] + r["ties"] for r in it["players"]) == 2 * it["num_decided"]
        assert all(r["bt_low"] <= r["bt"] <= r["bt_high"] for r in it["players"])
    with open(report / "leaderboard.csv", newline="") as f:
        rows = list(csv.DictReader(f))
    assert len(rows) == 2 * 4 and rows[0]["rank"] == "1"
    md = (report / "report.md").read_text()
    for heading in (
        "## Leaderboard after iteration 1",
        "## Plots",
        "## Evaluation results",
        "## Resolved config",
    ):
        assert heading in md
    page = (report / "report.html").read_text()
    assert page.count('src="data:image/png;base64,') == len(plots.SIZES)
    # the demo evaluates: the evaluation stage's results table is in both documents
    assert (report / "results.csv").exists()
    assert "<h2>Evaluation results</h2><table>" in page
    assert "No evaluation results" not in md
    assert "http://" not in page and "https://" not in page  # self-contained


def test_report_shows_sample_matches_with_the_real_answers_and_scores(run_dir: Path, report: Path) -> None:
    import html

    first = json.loads((run_dir / "iter_001" / "rate" / "judged.jsonl").open().readline())
    md, page = (report / "report.md").read_text(), (report / "report.html").read_text()
    assert "## Sample matches" in md and '<h2 id="samples">Sample matches</h2>' in page
    assert f"### Match `{first['match_id']}` (iteration 1)" in md
    for player, answer in zip(first["players"], first["responses"], strict=True):
        shown = answer[:800].strip() or "(empty)"
        assert f"**{player}**" in md
        assert html.escape(shown.splitlines()[0]) in page
    judges = sorted(first["judgments"])
    assert judges and all(f"| {j} |" in md for j in judges)


def png_size(path: Path) -> tuple[int, int]:
    data = path.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n", f"{path} is not a PNG"
    assert data[12:16] == b"IHDR"
    return struct.unpack(">II", data[16:24])


@pytest.mark.parametrize("name", sorted(plots.SIZES))
def test_plot_is_a_real_image_of_the_expected_size(report: Path, name: str) -> None:
    path = report / f"{name}.png"
    assert png_size(path) == plots.SIZES[name]
    pixels = mpimg.imread(path)
    assert pixels.shape[:2] == plots.SIZES[name][::-1]
    assert pixels[..., :3].std() > 0.05, f"{name}.png is blank"


def chromium() -> str:
    for name in ("chromium", "chromium-browser", "google-chrome", "chrome"):
        found = shutil.which(name)
        if found:
            return found
    if os.environ.get("CI") == "true":
        pytest.fail("Chromium is required in CI (scripts/test.sh installs the Debian package)")
    pytest.skip("Chromium is not installed (apt-get install --no-install-recommends chromium)")


def headless(report: Path, profile: Path, *args: str) -> subprocess.CompletedProcess[str]:
    flags = [
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-quic",
        "--no-first-run",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        f"--user-data-dir={profile}",
    ]
    url = (report / "report.html").resolve().as_uri()
    return subprocess.run(
        [chromium(), *flags, *args, url], capture_output=True, text=True, timeout=120, check=True
    )


def test_html_report_opens_in_headless_chromium(report: Path, tmp_path: Path) -> None:
    dom = headless(report, tmp_path / "profile-dom", "--dump-dom").stdout
    # the page's own script fills #report-check on load: every image decoded, no script error
    assert f'data-images="{len(plots.SIZES)}"' in dom, dom[-2000:]
    assert 'data-broken="0"' in dom and 'data-errors="0"' in dom
    shot = tmp_path / "report.png"
    headless(report, tmp_path / "profile-shot", f"--screenshot={shot}", "--window-size=1200,2000")
    assert png_size(shot) == (1200, 2000)
    pixels = mpimg.imread(shot)[..., :3]
    assert pixels.std() > 0.05, "the screenshot is blank"
    assert len(np.unique(pixels.reshape(-1, 3), axis=0)) > 50, "the screenshot shows no figures"
