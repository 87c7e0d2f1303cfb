"""Rendering of ``sparta-hpc report``: the same content as Markdown and as one self-contained HTML page.

The HTML page embeds its images as base64 data URIs and has no external resource. A small inline script
checks on load that every image decoded and no script error happened, and writes the result into the
``#report-check`` element (what the headless-browser test reads).
"""

from __future__ import annotations

import base64
import html
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from sparta_hpc.report.training import SUMMARY_HEADERS

CAPTIONS = {
    "trajectories": "Reputation trajectories (SPARTA, ±1.96 deviation) and Bradley-Terry ratings with "
    "bootstrap 95% confidence intervals, per iteration.",
    "win_rates": "Pairwise win rate of the row player against the column player over all rated iterations "
    "(a match's winner has the higher reputation-weighted mean judge score; ties count half).",
    "judge_agreement": "Share of the matches two judges both scored where they picked the same winner.",
    "evaluation": "Evaluation metric of every player after each evaluated iteration.",
}
DPO_NOTE = (
    "TRL's per-step metrics of every player's DPO job (all steps in dpo_steps.csv): the first and last "
    "logged loss, the mean reward margin (chosen minus rejected) and the mean share of pairs with a "
    "positive margin."
)
LEADERBOARD_HEADERS = ("#", "player", "reputation", "deviation", "BT", "BT 95% CI", "W-L-T")
JUDGE_HEADERS = ("judge", "usable", "failed", "missing", "parse failures", "agreement with aggregate")


def _pct(x: float | None) -> str:
    return "-" if x is None else f"{100 * x:.1f}%"


def leaderboard_cells(rows: list[dict[str, Any]]) -> list[list[str]]:
    return [
        [
            str(r["rank"]),
            r["player"],
            f"{r['reputation']:.4f}",
            f"{r['deviation']:.4f}",
            f"{r['bt']:.1f}",
            f"[{r['bt_low']:.1f}, {r['bt_high']:.1f}]",
            f"{r['wins']}-{r['losses']}-{r['ties']}",
        ]
        for r in rows
    ]


def judge_cells(judges: dict[str, dict[str, Any]]) -> list[list[str]]:
    return [
        [
            j,
            str(s["usable"]),
            str(s["failed"]),
            str(s["missing"]),
            _pct(s["parse_failure_rate"]),
            f"{_pct(s['agreement'])} of {s['compared']}",
        ]
        for j, s in judges.items()
    ]


def _short(text: str) -> str:
    """Full-precision floats of the results table to 4 decimals for reading."""
    try:
        return f"{float(text):.4f}" if "." in text else text
    except ValueError:
        return text


def _results_cells(table: list[dict[str, str]]) -> tuple[list[str], list[list[str]]]:
    headers = list(table[0]) if table else []
    return headers, [[_short(row.get(h) or "-") for h in headers] for row in table]


def _demote(markdown: str) -> str:
    """Headings one level down, so an embedded document sits under the report's own heading."""
    return "\n".join("#" + line if line.startswith("#") else line for line in markdown.strip().splitlines())


# ---------------------------------------------------------------- markdown


def md_table(headers: Sequence[str], rows: Sequence[Sequence[str]], *, compact_rule: bool = False) -> str:
    """A Markdown table (``|`` in a cell escaped); ``compact_rule``: the rule line as ``|---|---|`` (as
    ``results.md`` has it) instead of ``| --- | --- |``."""

    def line(cells: Sequence[str]) -> str:
        return "| " + " | ".join(c.replace("|", "\\|") for c in cells) + " |"

    rule = "|" + "---|" * len(headers) if compact_rule else line(["---"] * len(headers))
    return "\n".join([line(headers), rule, *(line(r) for r in rows)])


def render_markdown(doc: dict[str, Any]) -> str:
    parts = [
        "# SPARTA run report",
        f"Run directory: `{doc['run_dir']}`; "
        f"iterations committed: {doc['iteration']}/{doc['iterations_total']}.",
    ]
    if not doc["boards"]:
        parts.append("No iteration has been rated yet.")
    for b in reversed(doc["boards"]):
        parts += [
            f"## Leaderboard after iteration {b.iteration}",
            f"{b.num_matches} matches, {b.num_decided} with a judged winner.",
            md_table(LEADERBOARD_HEADERS, leaderboard_cells(b.rows)),
            f"### Judges in iteration {b.iteration}",
            md_table(JUDGE_HEADERS, judge_cells(b.judges)),
        ]
    parts.append("## Plots")
    for name, path in doc["figures"].items():
        parts.append(f"![{name}]({Path(path).name})\n\n{CAPTIONS[name]}")
    parts.append("## Evaluation results")
    if doc["results_markdown"]:
        parts.append(_demote(doc["results_markdown"]))
    elif doc["results_table"]:
        parts.append(md_table(*_results_cells(doc["results_table"])))
    else:
        parts.append("No evaluation results in this run.")
    parts += _samples_markdown(doc.get("samples", []))
    parts += ["## DPO training", DPO_NOTE]
    if doc.get("dpo"):
        parts.append(md_table(SUMMARY_HEADERS, doc["dpo"]))
    parts += ["## Resolved config", "```yaml\n" + doc["config_yaml"].rstrip() + "\n```"]
    return "\n\n".join(parts) + "\n"


SAMPLES_NOTE = (
    "The first matches of the last rated iteration as the players answered and the judges scored them "
    "(score of the first answer, score of the second; '-': no usable score)."
)


def _score_text(scores: list[float | None] | None) -> str:
    if scores is None:
        return "failed"
    return ", ".join("-" if s is None else f"{s:g}" for s in scores)


def _samples_markdown(samples: list[dict[str, Any]]) -> list[str]:
    if not samples:
        return []
    parts = ["## Sample matches", SAMPLES_NOTE]
    for m in samples:
        quoted = [
            f"**{p}**:\n\n" + "\n".join(f"> {line}" for line in (a or "(empty)").splitlines())
            for p, a in m["answers"]
        ]
        parts += [
            f"### Match `{m['match_id']}` (iteration {m['iteration']})",
            "**Prompt**:\n\n" + "\n".join(f"> {line}" for line in m["prompt"].splitlines()),
            *quoted,
            md_table(("judge", "scores"), [[j, _score_text(s)] for j, s in m["scores"]]),
        ]
    return parts


def _samples_html(samples: list[dict[str, Any]]) -> str:
    if not samples:
        return ""
    blocks = []
    for m in samples:
        answers = "".join(
            f"<h4>{html.escape(p)}</h4><pre>{html.escape(a or '(empty)')}</pre>" for p, a in m["answers"]
        )
        scores = html_table(("judge", "scores"), [[j, _score_text(s)] for j, s in m["scores"]])
        blocks.append(
            f"<h3>Match <code>{html.escape(m['match_id'])}</code> (iteration {m['iteration']})</h3>"
            f"<h4>Prompt</h4><pre>{html.escape(m['prompt'])}</pre>{answers}{scores}"
        )
    return f'<h2 id="samples">Sample matches</h2><p>{html.escape(SAMPLES_NOTE)}</p>' + "".join(blocks)


# ---------------------------------------------------------------- html

STYLE = """
body { font-family: system-ui, sans-serif; margin: 1em auto; max-width: 1200px; padding: 0 1em; color: #222; }
table { border-collapse: collapse; margin: 0.5em 0 1.5em; font-size: 0.92em; }
th, td { border: 1px solid #ccc; padding: 0.25em 0.6em; text-align: left; }
th { background: #f0f0f0; } td.num { text-align: right; font-variant-numeric: tabular-nums; }
figure { margin: 1em 0 2em; } figure img { max-width: 100%; border: 1px solid #ddd; }
figcaption { color: #555; font-size: 0.9em; } pre { background: #f7f7f7; padding: 1em; overflow-x: auto; }
#report-check { color: #888; font-size: 0.8em; margin-top: 3em; }
"""
CHECK_SCRIPT = """
window.reportErrors = [];
window.addEventListener("error", function (e) { window.reportErrors.push(String(e.message || e)); });
window.addEventListener("load", function () {
  var images = Array.prototype.slice.call(document.images);
  var broken = images.filter(function (i) { return !(i.complete && i.naturalWidth > 0); }).length;
  var check = document.getElementById("report-check");
  check.setAttribute("data-images", String(images.length));
  check.setAttribute("data-broken", String(broken));
  check.setAttribute("data-errors", String(window.reportErrors.length));
  check.textContent = "report-check: loaded, " + images.length + " images, " + broken + " broken, "
    + window.reportErrors.length + " script errors";
});
"""


def _td(text: str) -> str:
    numeric = text[:1].isdigit() or text[:1] in "-+[" and text[1:2].isdigit()
    return f'<td class="num">{html.escape(text)}</td>' if numeric else f"<td>{html.escape(text)}</td>"


def html_table(headers: Sequence[str], rows: list[list[str]]) -> str:
    head = "".join(f"<th>{html.escape(h)}</th>" for h in headers)
    body = "".join("<tr>" + "".join(_td(c) for c in r) + "</tr>" for r in rows)
    return f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"


def data_uri(path: Path) -> str:
    return "data:image/png;base64," + base64.b64encode(Path(path).read_bytes()).decode("ascii")


def _board_html(b: Any) -> str:
    return (
        f"<p>{b.num_matches} matches, {b.num_decided} with a judged winner.</p>"
        + html_table(LEADERBOARD_HEADERS, leaderboard_cells(b.rows))
        + f"<h3>Judges in iteration {b.iteration}</h3>"
        + html_table(JUDGE_HEADERS, judge_cells(b.judges))
    )


def _boards_html(boards: list[Any]) -> str:
    if not boards:
        return "<p>No iteration has been rated yet.</p>"
    last, *earlier = list(reversed(boards))
    parts = [f"<h2>Leaderboard after iteration {last.iteration}</h2>", _board_html(last)]
    for b in earlier:
        parts.append(f"<details><summary>Iteration {b.iteration}</summary>{_board_html(b)}</details>")
    return "".join(parts)


def render_html(doc: dict[str, Any]) -> str:
    figures = "".join(
        f'<figure id="fig-{name}"><img alt="{name}" src="{data_uri(path)}">'
        f"<figcaption>{html.escape(CAPTIONS[name])}</figcaption></figure>"
        for name, path in doc["figures"].items()
    )
    table = doc["results_table"]
    results = html_table(*_results_cells(table)) if table else "<p>No evaluation results in this run.</p>"
    run = html.escape(doc["run_dir"])
    dpo = html_table(SUMMARY_HEADERS, doc["dpo"]) if doc.get("dpo") else ""
    return f"""<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8"><title>SPARTA report: {run}</title>
<style>{STYLE}</style><script>{CHECK_SCRIPT}</script></head>
<body><h1>SPARTA run report</h1>
<p>Run directory <code>{run}</code>; iterations committed: {doc["iteration"]}/{doc["iterations_total"]}.</p>
{_boards_html(doc["boards"])}
<h2>Plots</h2>{figures}
<h2>Evaluation results</h2>{results}
{_samples_html(doc.get("samples", []))}
<h2>DPO training</h2><p>{html.escape(DPO_NOTE)}</p>{dpo}
<h2>Resolved config</h2><pre>{html.escape(doc["config_yaml"])}</pre>
<footer id="report-check">report-check: not loaded</footer>
</body></html>
"""
