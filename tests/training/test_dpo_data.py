"""The DPO data policy on long prompts: every pair is kept (truncated as configured) or dropped and counted
with its reason, never dropped or cut silently by TRL; the counts reach the job's stats and the train stage's
info, and a run that drops too many warns."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from sparta_hpc.config import load_config
from sparta_hpc.config.load import load_section
from sparta_hpc.training.data import check_trl, prepare_pairs, sum_data, template_prompt
from sparta_hpc.training.dpo import TrainConfig, _dpo_config, run_dpo_job

INSTRUCTION = "Answer yes or no."
"""Where the tasks put it: at the end of the prompt (sparta_hpc/tasks/prompts.py)."""


def _story(words: int) -> str:
    """A prompt of about ``words`` tokens of the tiny tokenizer (each of these words is one token)."""
    vocabulary = ["the", "river", "city", "music", "story"]
    return " ".join(vocabulary[i % len(vocabulary)] for i in range(words))


def _pairs(long_prompt_words: int = 100) -> list[dict[str, str]]:
    return [
        {"prompt": "What is 1 + 1?", "chosen": "It is 2.", "rejected": "No idea."},
        {"prompt": f"{_story(long_prompt_words)} {INSTRUCTION}", "chosen": "yes", "rejected": "no"},
        {"prompt": "Say a lot.", "chosen": " ".join(["blue red"] * 60), "rejected": "ok"},
        {"prompt": f"{_story(30)} {INSTRUCTION}", "chosen": "no", "rejected": "yes"},
    ]


@pytest.fixture(scope="module")
def tokenizer(tiny_base: Path) -> Any:
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(tiny_base)


def _ids(tokenizer: Any, text: str) -> list[int]:
    return list(tokenizer(text=text)["input_ids"])  # as TRL tokenizes a plain-text pair


def _fits(tokenizer: Any, pair: dict[str, str], max_length: int) -> bool:
    return all(len(_ids(tokenizer, pair["prompt"] + pair[r])) <= max_length for r in ("chosen", "rejected"))


def _adds_up(data: dict[str, Any]) -> bool:
    return data["given"] == data["kept"] + sum(data["dropped"].values())


def test_train_config_checks_the_new_keys() -> None:
    with pytest.raises(ValueError, match=r"train\.max_prompt_tokens=0"):
        TrainConfig(max_prompt_tokens=0)
    with pytest.raises(ValueError, match=r"train\.prompt_truncation='middle'"):
        TrainConfig(prompt_truncation="middle")
    with pytest.raises(ValueError, match=r"train\.max_drop_share=1\.5"):
        TrainConfig(max_drop_share=1.5)
    assert load_section("train", "paper").max_prompt_tokens is None
    assert load_section("train", "released").max_prompt_tokens == 256
    assert load_config(overrides=["run.profile=released"]).train.max_prompt_tokens == 256  # max_length 128


@pytest.mark.parametrize("side", ["left", "right"])
def test_every_pair_is_kept_truncated_or_dropped_with_its_reason(tokenizer: Any, side: str) -> None:
    pairs, eos = _pairs(), tokenizer.eos_token
    # No prompt cap: the long prompt leaves no room for a response in 64 tokens, so the pair is dropped.
    kept, stats = prepare_pairs(
        tokenizer, pairs, max_length=64, max_prompt_tokens=None, prompt_truncation=side
    )
    data = stats.to_dict(max_drop_share=0.1)
    assert data["dropped"] == {"prompt_too_long": 1, "trl_filter": 0} and _adds_up(data)
    assert data["truncated"] == {"prompt": 0, "response": 1, "trl_cut": 0}
    assert data["drop_share"] == 0.25 and data["over_max_drop_share"]
    assert [k["prompt"] for k in kept] == [template_prompt(tokenizer, pairs[i]["prompt"]) for i in (0, 2, 3)]

    # A cap of 24 prompt tokens: every pair is kept, the two long prompts cut on the configured side.
    kept, stats = prepare_pairs(tokenizer, pairs, max_length=64, max_prompt_tokens=24, prompt_truncation=side)
    data = stats.to_dict(max_drop_share=0.1)
    assert data["kept"] == 4 and _adds_up(data) and not data["over_max_drop_share"]
    assert data["truncated"] == {"prompt": 2, "response": 1, "trl_cut": 0}
    short = pairs[0]
    assert kept[0] == {"prompt": template_prompt(tokenizer, short["prompt"]), "chosen": short["chosen"] + eos,
                       "rejected": short["rejected"] + eos}  # fmt: skip
    for pair in kept:
        assert _fits(tokenizer, pair, 64) and len(_ids(tokenizer, pair["prompt"])) <= 24
        assert pair["chosen"].endswith(eos) and pair["rejected"].endswith(eos)
        # the chat template is never cut: BOS and user turn at the start, the generation prompt at the end
        assert pair["prompt"].startswith("<s><|user|>\n") and pair["prompt"].endswith("\n<|assistant|>\n")
    long = kept[1]["prompt"]
    assert long.endswith(f"{INSTRUCTION}\n<|assistant|>\n") == (side == "left")
    assert long.startswith("<s><|user|>\nthe river city") == (side == "right")
    assert len(_ids(tokenizer, long)) >= 22  # cut to the cap, not far below it
    cut = kept[2]["chosen"]
    assert cut.startswith("blue red blue") and cut.endswith(f"{eos}") and len(cut) < len(pairs[2]["chosen"])
    assert len(_ids(tokenizer, kept[2]["prompt"] + cut)) == 64  # filled up to max_length


def test_released_profile_caps_prompts_at_256_tokens(tokenizer: Any) -> None:
    pairs = _pairs(long_prompt_words=600)
    released, paper = load_section("train", "released"), load_section("train", "paper")
    for cfg, dropped in ((released, 0), (paper, 1)):
        kept, stats = prepare_pairs(
            tokenizer, pairs, max_length=cfg.max_length, max_prompt_tokens=cfg.max_prompt_tokens,
            prompt_truncation=cfg.prompt_truncation,
        )  # fmt: skip
        assert stats.dropped["prompt_too_long"] == dropped and stats.kept == 4 - dropped
        assert all(_fits(tokenizer, p, cfg.max_length) for p in kept)
    kept, stats = prepare_pairs(tokenizer, pairs, max_length=512, max_prompt_tokens=256)
    assert stats.prompt_truncated == 1 and 250 <= len(_ids(tokenizer, kept[1]["prompt"])) <= 256
    assert kept[1]["prompt"].endswith(f"{INSTRUCTION}\n<|assistant|>\n")


@pytest.mark.slow
def test_trl_drops_a_long_prompt_silently_unless_the_policy_runs_first(
    tokenizer: Any, tiny_base: Path, tmp_path: Path
) -> None:
    """The old path (pairs formatted, TRL left to cope) loses the long-prompt pair without a word; after the
    policy, TRL's preprocessing keeps and cuts nothing, and check_trl confirms it."""
    from datasets import Dataset
    from transformers import AutoModelForCausalLM
    from trl import DPOTrainer

    pairs, eos = _pairs(), tokenizer.eos_token
    model = AutoModelForCausalLM.from_pretrained(tiny_base)
    args = _dpo_config(TrainConfig(max_length=64, bf16=False), tmp_path, 0, False, True)

    def prepared(rows: list[dict[str, str]]) -> Any:
        trainer = DPOTrainer(
            model=model, args=args, train_dataset=Dataset.from_list(rows), processing_class=tokenizer
        )
        return trainer.train_dataset

    old = [{"prompt": template_prompt(tokenizer, p["prompt"]), "chosen": p["chosen"] + eos,
            "rejected": p["rejected"] + eos} for p in pairs]  # fmt: skip
    trl_rows = prepared(old)
    assert len(trl_rows) == len(pairs) - 1  # the 100-token prompt is gone, and no count says so
    assert any(len(r["prompt_ids"]) + len(r["chosen_ids"]) > 64 for r in trl_rows)  # the collator cuts one

    kept, stats = prepare_pairs(tokenizer, pairs, max_length=64, max_prompt_tokens=None)
    check_trl(stats, prepared(kept), max_length=64)
    assert stats.dropped == {"prompt_too_long": 1, "trl_filter": 0} and stats.kept == 3 and stats.trl_cut == 0


@pytest.mark.slow
def test_job_stats_count_every_pair_and_warn_before_training(
    tiny_base: Path, tiny_adapters: list[Path], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / "pairs.jsonl"
    path.write_text("".join(json.dumps(p) + "\n" for p in _pairs()))

    def train(name: str, **cfg: Any) -> dict[str, Any]:
        return run_dpo_job(
            TrainConfig(learning_rate=1e-3, max_length=64, bf16=False, **cfg),
            base=str(tiny_base), adapter_in=str(tiny_adapters[0]), pairs_path=str(path), seed=7,
            adapter_out=str(tmp_path / name / "adapter"), work_dir=str(tmp_path / name / "work"),
        )  # fmt: skip

    stats = train("uncapped")
    out = capsys.readouterr().out
    assert "WARNING: 1 of 4 preference pairs dropped (25.0% > train.max_drop_share=0.1" in out
    assert out.index("WARNING") < out.index("'loss'")  # printed before the first logged step
    assert stats["num_pairs"] == 4 and stats["steps"] == 3 and _adds_up(stats["data"])
    assert stats["data"]["dropped"]["prompt_too_long"] == 1 and stats["data"]["over_max_drop_share"]

    stats = train("capped", max_prompt_tokens=24, max_drop_share=0.0)
    assert "WARNING" not in capsys.readouterr().out
    assert stats["steps"] == 4 and stats["data"]["kept"] == 4 and stats["data"]["truncated"]["prompt"] == 2


def test_train_stage_sums_the_jobs_counts_and_repeats_their_warnings(tmp_path: Path) -> None:
    from sparta_hpc.files import write_json
    from sparta_hpc.run import iteration
    from sparta_hpc.store.rundir import RunDir

    cfg = load_config(overrides=["train.max_drop_share=0.2"])
    run, players, lines = RunDir(tmp_path / "run"), cfg.player_names, []
    write_json(run.rate_report(0), {"num_pairs": 10})

    def data(dropped: int) -> dict[str, Any]:
        share = dropped / 10
        return {"given": 10, "kept": 10 - dropped, "truncated": {"prompt": 1, "response": 2, "trl_cut": 0},
                "dropped": {"prompt_too_long": dropped, "trl_filter": 0}, "drop_share": share,
                "over_max_drop_share": share > 0.2}  # fmt: skip

    class Runner:
        log = staticmethod(lines.append)

        def run(self, jobs: Any) -> dict[str, Any]:
            for i, p in enumerate(players):  # the jobs' stats, as train_player writes them
                write_json(run.train_stats(0, p), {"num_pairs": 10, "data": data(dropped=i)})
            return {}

    _, info = iteration.train(0, cfg, run, Runner())  # type: ignore[arg-type]
    n = len(players)
    assert info["pairs"] == sum_data([data(i) for i in range(n)], 0.2)
    assert info["pairs"]["given"] == 10 * n and _adds_up(info["pairs"])
    assert info["pairs"]["dropped"]["prompt_too_long"] == sum(range(n))
    assert lines[0] == (
        f"[iter 0] train    {n} players' jobs: pairs kept {10 * n - sum(range(n))} of {10 * n} "
        f"(truncated: prompt {n}, response {2 * n}; dropped: prompt_too_long {sum(range(n))})"
    )
    warned = [line for line in lines if "WARNING" in line]
    assert [line.split()[4].rstrip(":") for line in warned] == [p for i, p in enumerate(players) if i > 2]
