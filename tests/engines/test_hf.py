"""HFEngine on tiny real models: reproducible sampling, players, truncation, the logprob judge."""

from __future__ import annotations

import json
import shutil
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path

import pytest

from sparta_hpc.engines.base import ModelSpec, Request, Sampling
from sparta_hpc.engines.hf import SCORE_PREFIX, HFEngine

pytestmark = pytest.mark.slow

SAMPLED = Sampling(max_new_tokens=12)
GREEDY = Sampling(max_new_tokens=24, greedy=True)


def _players(base: Path, adapters: list[Path]) -> list[ModelSpec]:
    return [
        ModelSpec(name="alpha", base=str(base), adapter=str(adapters[0])),
        ModelSpec(name="beta", base=str(base), adapter=str(adapters[1])),
        ModelSpec(name="plain", base=str(base)),
    ]


def _requests(models: list[str], count: int, **kwargs: object) -> list[Request]:
    return [
        Request(
            request_id=f"r{i}",
            model=models[i % len(models)],
            prompt=f"What is {i % 10} + 1?",
            seed=i,
            **kwargs,
        )
        for i in range(count)
    ]


@pytest.fixture(scope="module")
def engine(tiny_base: Path, tiny_adapters: list[Path]) -> Iterator[HFEngine]:
    engine = HFEngine(_players(tiny_base, tiny_adapters), batch_size=2)
    yield engine
    engine.close()


def test_sampling_is_reproducible_across_engines(
    engine: HFEngine, tiny_base: Path, tiny_adapters: list[Path]
) -> None:
    requests = _requests(["alpha", "beta", "plain"], 9)
    first = engine.generate(requests, SAMPLED)
    other = HFEngine(_players(tiny_base, tiny_adapters), batch_size=2)
    assert other.generate(requests, SAMPLED) == first
    assert [c.request_id for c in first] == [r.request_id for r in requests]
    assert len({c.text for c in first}) > 1
    assert all(0 < c.num_new_tokens <= SAMPLED.max_new_tokens and "<s>" not in c.text for c in first)


def test_micro_batches_do_not_depend_on_earlier_ones(engine: HFEngine) -> None:
    requests = _requests(["alpha"], 6)
    full = engine.generate(requests, SAMPLED)
    engine.generate(_requests(["beta"], 3), SAMPLED)  # moves the global random state
    assert engine.generate(requests[4:], SAMPLED) == full[4:]  # the last micro-batch alone, as on resume


def test_greedy_differs_between_players(engine: HFEngine) -> None:
    prompt = "Explain the water cycle."
    requests = [Request(request_id=m, model=m, prompt=prompt, seed=0) for m in ("alpha", "beta", "plain")]
    texts = [c.text for c in engine.generate(requests, GREEDY)]
    assert len(set(texts)) == 3
    assert engine.generate(requests, GREEDY) == engine.generate(requests[::-1], GREEDY)[::-1]


def test_base_only_engine_matches_adapter_free_player(engine: HFEngine, tiny_base: Path) -> None:
    solo = HFEngine([ModelSpec(name="plain", base=str(tiny_base))], batch_size=2)
    requests = _requests(["plain"], 3)
    assert solo.generate(requests, GREEDY) == engine.generate(requests, GREEDY)
    assert len(solo.expected_scores(_requests(["plain"], 2, assistant_prefix=SCORE_PREFIX))) == 2


def test_prompt_is_cut_before_the_assistant_prefix(engine: HFEngine, tiny_base: Path) -> None:
    from transformers import AutoTokenizer

    prefix_len = len(
        AutoTokenizer.from_pretrained(tiny_base)(SCORE_PREFIX, add_special_tokens=False).input_ids
    )
    long = Request(
        request_id="long", model="alpha", prompt="word " * 50, seed=0, assistant_prefix=SCORE_PREFIX
    )
    cut = replace(long, request_id="cut", max_prompt_tokens=7)
    full, short = engine.generate([long, cut], GREEDY)
    assert full.num_prompt_tokens > 50 and short.num_prompt_tokens == 7 + prefix_len
    assert engine.expected_scores([cut])[0].num_prompt_tokens == 7 + prefix_len


def test_unknown_player_is_refused(engine: HFEngine) -> None:
    with pytest.raises(ValueError, match="unknown player"):
        engine.generate(_requests(["nobody"], 1), SAMPLED)


def _manual_scores(base: Path, adapter: Path, prompts: list[str]) -> list[tuple[float, float]]:
    """Expected score and mass from unpadded single forwards, "10" = "1" then "0" when it is two tokens."""
    import torch
    from peft import PeftModel
    from transformers import AutoModelForCausalLM, AutoTokenizer

    tok = AutoTokenizer.from_pretrained(base)
    model = PeftModel.from_pretrained(AutoModelForCausalLM.from_pretrained(base), adapter).eval()
    ids = {n: tok(SCORE_PREFIX + str(n), add_special_tokens=False).input_ids[-1] for n in range(11)}
    ten_is_one_token = len(tok(SCORE_PREFIX + "10", add_special_tokens=False).input_ids) == len(
        tok(SCORE_PREFIX + "1", add_special_tokens=False).input_ids
    )

    def next_probs(prompt_ids: list[int]) -> torch.Tensor:
        with torch.no_grad():
            return model(input_ids=torch.tensor([prompt_ids])).logits[0, -1].double().softmax(-1)

    results = []
    for prompt in prompts:
        text = tok.apply_chat_template(
            [{"role": "user", "content": prompt}], tokenize=False, add_generation_prompt=True
        )
        prompt_ids = (
            tok(text, add_special_tokens=False).input_ids
            + tok(SCORE_PREFIX, add_special_tokens=False).input_ids
        )
        p = next_probs(prompt_ids)
        probs = [float(p[ids[n]]) for n in range(1, 11)]
        if not ten_is_one_token:
            zero_after_one = float(next_probs([*prompt_ids, ids[1]])[ids[0]])
            probs[0], probs[9] = probs[0] * (1 - zero_after_one), probs[0] * zero_after_one
        mass = sum(probs)
        results.append((sum(n * q for n, q in zip(range(1, 11), probs, strict=True)) / mass, mass))
    return results


def _check_scores_against_manual(base: Path, adapter: Path) -> None:
    prompts = ["Rate this answer.", "How good is the following response about rivers and cities?", "Hi"]
    engine = HFEngine([ModelSpec(name="judge", base=str(base), adapter=str(adapter))], batch_size=3)
    requests = [
        Request(request_id=str(i), model="judge", prompt=p, seed=0, assistant_prefix=SCORE_PREFIX)
        for i, p in enumerate(prompts)
    ]
    scores = engine.expected_scores(requests)  # one left-padded batch of three lengths
    for score, (expected, mass) in zip(scores, _manual_scores(base, adapter, prompts), strict=True):
        assert 1 <= score.score <= 10 and 0 < score.mass <= 1
        assert score.score == pytest.approx(expected, abs=1e-4)
        assert score.mass == pytest.approx(mass, rel=1e-4)


def test_expected_scores_single_token_ten(tiny_base: Path, tiny_adapters: list[Path]) -> None:
    _check_scores_against_manual(tiny_base, tiny_adapters[0])


def test_expected_scores_two_token_ten(tiny_base: Path, tiny_adapters: list[Path], tmp_path: Path) -> None:
    from transformers import AutoTokenizer

    from sparta_hpc.engines.hf import score_tokens

    base = Path(shutil.copytree(tiny_base, tmp_path / "split-ten"))
    data = json.loads((base / "tokenizer.json").read_text())
    data["model"]["merges"] = [m for m in data["model"]["merges"] if m != ["1", "0"]]  # "10" -> "1", "0"
    (base / "tokenizer.json").write_text(json.dumps(data))
    assert score_tokens(AutoTokenizer.from_pretrained(base)).ten is None
    _check_scores_against_manual(base, tiny_adapters[1])
