"""The judge job's requests: one per (match, judge, side), with the configured rubric."""

import pytest

from sparta_hpc.config import load_config
from sparta_hpc.jobs.judge import judge_requests
from sparta_hpc.method import judging
from sparta_hpc.method.types import Match


@pytest.mark.parametrize(
    ("overrides", "ending", "prefix"),
    [
        (["judge.method=generate"], 'in this form: {"score": N}, where N is your grade.', ""),
        (["judge.method=generate", "run.profile=released"], 'like this: {"score": 7}', ""),
        (["judge.method=logprob", "judge.rubric=released"], 'like this: {"score": 7}', '{"score": '),
    ],
)
def test_requests_use_the_configured_rubric(overrides: list[str], ending: str, prefix: str) -> None:
    cfg = load_config(overrides=overrides)
    a, b, *judges = cfg.player_names
    match = Match(match_id="t000-m000000", iteration=0, index=0, prompt_id="p", prompt="Q?", players=(a, b))
    requests = judge_requests(cfg, 0, [match], {("t000-m000000", a): "ya", ("t000-m000000", b): "yb"})
    assert [r.request_id for r in requests] == [f"t000-m000000/{j}/{s}" for j in judges for s in "ab"]
    assert all(r.prompt.endswith(ending) and r.assistant_prefix == prefix for r in requests)
    assert requests[0].prompt == judging.judge_prompt("Q?", "ya", cfg.judge.rubric)
    assert requests[1].prompt == judging.judge_prompt("Q?", "yb", cfg.judge.rubric)
