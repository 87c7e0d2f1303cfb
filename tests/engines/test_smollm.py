"""A real instruct model (SmolLM2-135M-Instruct, converted from its GGUF once per machine) through the HF
engine, both judge methods and DPO: its real chat template, stop tokens, left padding and long prompts.
The whole loop on it (plan resolves the GGUF, generate, judge, train, evaluate): tests/run/test_smollm.py."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from sparta_hpc.engines.base import ModelSpec, Request, Sampling
from sparta_hpc.engines.hf import SCORE_PREFIX, HFEngine, encode_prompt
from sparta_hpc.method import judging

pytestmark = pytest.mark.slow
GREEDY = Sampling(max_new_tokens=40, greedy=True)


@pytest.fixture(scope="module")
def engine(smollm2: Path) -> HFEngine:
    return HFEngine([ModelSpec(name="smol", base=str(smollm2))], dtype="float32", batch_size=4)


def ask(prompt: str, i: int = 0, **kwargs) -> Request:
    return Request(request_id=str(i), model="smol", prompt=prompt, seed=i, **kwargs)


def test_converted_folder_is_a_plain_model_with_its_chat_template(smollm2: Path) -> None:
    config = json.loads((smollm2 / "config.json").read_text())
    assert config["model_type"] == "llama" and "quantization_config" not in config
    assert config["num_hidden_layers"] == 30 and config["hidden_size"] == 576
    assert "<|im_start|>" in (smollm2 / "chat_template.jinja").read_text()
    source = json.loads((smollm2 / "sparta-source.json").read_text())
    assert source["gguf"] == "SmolLM2-135M-Instruct.Q4_1.gguf" and smollm2.name.endswith(
        source["sha256"][:16]
    )


def test_chat_answers_stop_at_eos_and_padding_changes_nothing(engine: HFEngine) -> None:
    tokenizer = engine._bases[next(iter(engine._bases))].tokenizer
    text = tokenizer.decode(encode_prompt(tokenizer, ask("What is the capital of France?")))
    assert text.startswith("<|im_start|>system\n") and text.endswith(
        "<|im_start|>user\nWhat is the capital of France?<|im_end|>\n<|im_start|>assistant\n"
    )
    prompts = [
        "What is the capital of France?",
        "Write one sentence about the sea. " + "Please keep it short and simple, in plain words. " * 6,
    ]
    together = engine.generate([ask(p, i) for i, p in enumerate(prompts)], GREEDY)  # one left-padded batch
    alone = [engine.generate([ask(p, i)], GREEDY)[0] for i, p in enumerate(prompts)]
    assert together == alone
    assert together[0].num_prompt_tokens < together[1].num_prompt_tokens
    assert "Paris" in together[0].text
    assert together[0].num_new_tokens < GREEDY.max_new_tokens  # stopped at <|im_end|>, not at the limit
    assert all("<|im_end|>" not in c.text and "<|im_start|>" not in c.text for c in together)


def test_long_prompts_are_cut_or_read_whole(engine: HFEngine) -> None:
    long = "Here is a long list of numbers: " + ", ".join(str(i) for i in range(300)) + ". What came first?"
    cut, whole = engine.generate(
        [ask(long, 0, max_prompt_tokens=256), ask(long, 1)], Sampling(max_new_tokens=4, greedy=True)
    )
    assert cut.num_prompt_tokens == 256
    assert whole.num_prompt_tokens > 600
    assert cut.num_new_tokens > 0 and whole.num_new_tokens > 0


def test_both_judges_score_for_real(engine: HFEngine) -> None:
    question = "What is 17 + 25?"
    answers = ["17 + 25 = 42.", "The answer is a banana.", "42", "I do not know, sorry."]
    prompts = [judging.judge_prompt(question, a) for a in answers]
    written = engine.generate(
        [ask(p, i, max_prompt_tokens=512) for i, p in enumerate(prompts)], Sampling(max_new_tokens=12)
    )
    # A 135M model answers the judge prompt in prose (it rarely writes {"score": N}: docs/performance.md);
    # what it writes is words, whether the released parser finds a score in it or not.
    for c in written:
        words = c.text.split()
        assert len(words) >= 3 and sum(w.strip('.,:!?"{}').isalpha() for w in words) >= len(words) // 2, (
            c.text
        )
        assert judging.parse_score(c.text) in (None, *range(1, 11))
    expected = engine.expected_scores(
        [ask(p, i, assistant_prefix=SCORE_PREFIX, max_prompt_tokens=512) for i, p in enumerate(prompts)]
    )
    # after {"score": the next token is a digit with most of the probability mass: a real score distribution
    assert all(1 <= e.score <= 10 and e.mass > 0.5 for e in expected), expected
    assert max(e.score for e in expected) - min(e.score for e in expected) > 0.1  # the answers are told apart


def test_dpo_trains_a_lora_on_the_real_model(smollm2: Path, tmp_path: Path) -> None:
    from sparta_hpc.training.dpo import TrainConfig, run_dpo_job

    rows = [
        {"prompt": f"What is {i} + 1?", "chosen": f"{i} + 1 = {i + 1}.", "rejected": "No."} for i in range(4)
    ]
    pairs = tmp_path / "pairs.jsonl"
    pairs.write_text("".join(json.dumps(r) + "\n" for r in rows))
    train = TrainConfig(learning_rate=5e-4, max_length=64, save_steps=100, bf16=False, lora_rank=4)
    out = tmp_path / "adapter"
    info = run_dpo_job(
        train, base=str(smollm2), adapter_in=None, adapter_out=str(out), pairs_path=str(pairs),
        work_dir=str(tmp_path / "work"), seed=1,
    )  # fmt: skip
    assert info["num_pairs"] == 4
    trained = HFEngine(
        [
            ModelSpec(name="smol", base=str(smollm2)),
            ModelSpec(name="dpo", base=str(smollm2), adapter=str(out)),
        ],
        dtype="float32",
    )
    prompt = "What is 7 + 1?"
    base, tuned = trained.expected_scores(
        [ask(prompt, 0, assistant_prefix=SCORE_PREFIX), Request(
            request_id="1", model="dpo", prompt=prompt, seed=0, assistant_prefix=SCORE_PREFIX
        )]
    )  # fmt: skip
    assert base.score != tuned.score  # the adapter is loaded on the real base and changes it
