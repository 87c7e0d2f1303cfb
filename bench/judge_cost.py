"""Judge the same 64 judge prompts with both judge methods on the tiny model (CPU) and compare their cost.

    python bench/judge_cost.py [--engine hf|vllm] [--num-prompts 64] [--out bench/out/judge_cost]

``generate`` uses the released decoding limits (sampled, T 0.7, top-k 50, top-p 0.95, up to 256 new tokens,
prompt cut at 512 tokens), which a random tiny model uses fully; ``logprob`` reads the expected score from one
prefill of the same prompts followed by ``{"score": ``. Prints the tokens each method processed and its wall
time (model loading excluded); the last line is ``judge_cost: generate/logprob wall ratio = X``.
``--engine vllm`` needs vLLM (``.venv-vllm/bin/python bench/judge_cost.py --engine vllm``).
"""

from __future__ import annotations

import argparse
import os
import random
import time
from pathlib import Path
from typing import Any

from sparta_hpc.engines.base import ModelSpec, Request, Sampling
from sparta_hpc.method import judging

RELEASED = Sampling(max_new_tokens=256, temperature=0.7, top_k=50, top_p=0.95)
MAX_PROMPT_TOKENS = 512
WORDS = [
    "the",
    "answer",
    "is",
    "because",
    "first",
    "then",
    "we",
    "add",
    "seven",
    "and",
    "five",
    "to",
    "get",
    "twelve",
    "so",
    "result",
    "number",
]


def judge_requests(num_prompts: int, prefix: str) -> list[Request]:
    """Arithmetic questions with wordy answers of 40-120 words, as one judge prompt each."""
    rng = random.Random(0)
    requests = []
    for i in range(num_prompts):
        a, b = rng.randint(0, 50), rng.randint(0, 50)
        answer = " ".join(rng.choice(WORDS) for _ in range(rng.randint(40, 120))) + f" {a + b}."
        requests.append(
            Request(
                request_id=f"j{i}",
                model="judge",
                prompt=judging.judge_prompt(f"What is {a} + {b}? Answer with the number.", answer),
                seed=i,
                assistant_prefix=prefix,
                max_prompt_tokens=MAX_PROMPT_TOKENS,
            )
        )
    return requests


def make_engine(kind: str, out: Path) -> Any:
    """The tiny base with a random adapter, on the HF engine or on vLLM (CPU build)."""
    from sparta_hpc.engines.tiny import build_tiny_adapter, build_tiny_base

    base = build_tiny_base(out / "base", seed=0)
    spec = ModelSpec(name="judge", base=str(base), adapter=str(build_tiny_adapter(base, out / "adapter", 1)))
    if kind == "hf":
        from sparta_hpc.engines.hf import HFEngine

        return HFEngine([spec], dtype="float32", batch_size=16)
    from sparta_hpc.engines.base import EngineConfig
    from sparta_hpc.engines.vllm import VLLMEngine

    return VLLMEngine(
        [spec],
        EngineConfig(kind="vllm", dtype="float32", kv_cache_gb=1.0, max_model_len=1024, enforce_eager=True),
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--engine", choices=("hf", "vllm"), default="hf")
    parser.add_argument("--num-prompts", type=int, default=64)
    parser.add_argument("--out", default=str(Path(__file__).parent / "out" / "judge_cost"))
    args = parser.parse_args()
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    engine = make_engine(args.engine, Path(args.out))
    engine.expected_scores(judge_requests(2, judging.SCORE_PREFIX))  # warm-up, not timed

    requests = judge_requests(args.num_prompts, "")
    start = time.perf_counter()
    completions = engine.generate(requests, RELEASED)
    generate_s = time.perf_counter() - start
    prompt_tokens = sum(c.num_prompt_tokens for c in completions)
    new_tokens = sum(c.num_new_tokens for c in completions)
    parsed = sum(judging.parse_score(c.text) is not None for c in completions)

    start = time.perf_counter()
    scores = engine.expected_scores(judge_requests(args.num_prompts, judging.SCORE_PREFIX))
    logprob_s = time.perf_counter() - start
    logprob_tokens = sum(s.num_prompt_tokens for s in scores)
    engine.close()

    ratio = generate_s / logprob_s
    print(f"judge_cost: {args.num_prompts} judge prompts, tiny model, engine={args.engine}, CPU")
    print(
        f"generate: {prompt_tokens:,} prompt + {new_tokens:,} new tokens = {prompt_tokens + new_tokens:,} "
        f"tokens processed ({new_tokens / len(completions):.0f} new per judgment, "
        f"{parsed}/{len(completions)} parsed), {generate_s:.2f} s"
    )
    print(
        f"logprob: {logprob_tokens:,} tokens processed = {logprob_tokens / prompt_tokens:.3f}x the prompt "
        f'tokens (one prefill each, {{"score": }} included), {logprob_s:.2f} s'
    )
    print(f"targets: ratio >= 20 {'met' if ratio >= 20 else 'NOT met'}; logprob tokens <= 1.05x prompt "
          f"{'met' if logprob_tokens <= 1.05 * prompt_tokens else 'NOT met'}")  # fmt: skip
    print(f"judge_cost: generate/logprob wall ratio = {ratio:.1f}")


if __name__ == "__main__":
    main()
