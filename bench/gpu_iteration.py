"""Time one SPARTA iteration's generation, judging and DPO on one NVIDIA GPU: tokens/s and MFU per stage.

    python bench/gpu_iteration.py [--num-prompts 32] [--out DIR] [--json FILE]
    python bench/gpu_iteration.py --smoke     # a tiny model on whatever device there is (checks the script)

Self-contained: installs nothing and needs no network. The base is a ~0.5B model of the paper's base
architecture (the Qwen2.5-0.5B shape, Qwen2 config, 151,936-token vocabulary) with random weights in bf16; the
tokenizer is the project's small test tokenizer, its vocabulary padded with pseudo-words to the same size.
Four players (random LoRA adapters), one match per prompt: generation (sampled, 256 new tokens), judging by
the two other players with both methods (logprob; generate at the released limits), and the LoRA-DPO of one
player on one pair per match (the other players' jobs run the same on other GPUs). HF engine and TRL, as on
the cluster with ``engine.kind=hf``. Finishes in < 5 min on one A100/H100.

MFU = model FLOPs / (seconds x peak bf16 FLOP/s), with 2 x (matmul parameters) FLOPs per token and forward
and 3 forwards' worth per DPO token (policy forward and backward to the inputs, reference forward): the same
cost model as ``sparta-hpc plan``, whose ``gpu_types`` constants these numbers calibrate (docs/plan.md).
"""

from __future__ import annotations

import argparse
import json
import os
import random
import tempfile
import time
from pathlib import Path
from typing import Any

PEAK_TFLOPS = {"H200": 989.0, "H100": 989.0, "A100": 312.0, "L40S": 362.0, "A10": 125.0, "L4": 121.0}
"""Dense bf16 peaks by device-name fragment (first match wins)."""
QWEN25_05B = dict(
    vocab_size=151936,
    hidden_size=896,
    intermediate_size=4864,
    num_hidden_layers=24,
    num_attention_heads=14,
    num_key_value_heads=2,
    tie_word_embeddings=True,
)
SMOKE = dict(
    vocab_size=4096,
    hidden_size=64,
    intermediate_size=128,
    num_hidden_layers=2,
    num_attention_heads=2,
    num_key_value_heads=1,
    tie_word_embeddings=True,
)


def build_base(out: Path, shape: dict[str, int], device: str) -> Path:
    """A randomly initialised Qwen2-style base in bf16 (fp32 on CPU) with the test tokenizer."""
    import torch
    from transformers import AutoTokenizer, Qwen2Config, Qwen2ForCausalLM

    from sparta_hpc.engines.tiny import _train_tokenizer

    _train_tokenizer().save_pretrained(out)
    extend_vocabulary(out / "tokenizer.json", shape["vocab_size"])
    tokenizer = AutoTokenizer.from_pretrained(out)
    assert len(tokenizer) == shape["vocab_size"], (len(tokenizer), shape["vocab_size"])
    ids = {"bos_token_id": tokenizer.bos_token_id, "eos_token_id": tokenizer.eos_token_id}
    config = Qwen2Config(**shape, max_position_embeddings=4096, pad_token_id=tokenizer.pad_token_id, **ids)
    torch.manual_seed(0)
    with torch.device(device):
        model = Qwen2ForCausalLM(config)
    model.to(torch.bfloat16 if device == "cuda" else torch.float32)
    model.generation_config.update(pad_token_id=tokenizer.pad_token_id, **ids)
    model.save_pretrained(out)
    return out


def extend_vocabulary(path: Path, size: int) -> None:
    """Pad a byte-level BPE vocabulary with pseudo-words up to ``size`` ids, so that every token a model of
    that vocabulary samples decodes to text (the test tokenizer has ~1,000; Qwen2.5 has 151,936)."""
    data = json.loads(path.read_text())
    vocab = data["model"]["vocab"]
    rng = random.Random(0)
    next_id = max(vocab.values()) + 1
    while next_id < size:
        word = "\u0120" + "".join(rng.choice("abcdefghijklmnopqrstuvwxyz") for _ in range(rng.randint(3, 8)))
        if word not in vocab:
            vocab[word] = next_id
            next_id += 1
    path.write_text(json.dumps(data))


def matches(num_prompts: int, players: list[str]) -> list[tuple[str, str, str]]:
    """(prompt, player a, player b) of each match: synthetic arithmetic questions, players in rotation."""
    from sparta_hpc.tasks.convert import synthetic_task

    questions = [e.prompt for e in synthetic_task(num_prompts, 0, 0, seed=0)["train"]]
    n = len(players)
    return [(q, players[i % n], players[(i + 1) % n]) for i, q in enumerate(questions)]


def timed(fn: Any, *args: Any) -> tuple[Any, float]:
    import torch

    if torch.cuda.is_available():
        torch.cuda.synchronize()
    start = time.perf_counter()
    result = fn(*args)
    if torch.cuda.is_available():
        torch.cuda.synchronize()
    return result, time.perf_counter() - start


def row(
    stage: str, count: str, prompt: int, new: int, seconds: float, flops: float, peak: float | None
) -> dict:
    """One line of the report: tokens/s counts prompt and new tokens; MFU is None without a known peak."""
    return {
        "stage": stage,
        "count": count,
        "prompt_tokens": prompt,
        "new_tokens": new,
        "seconds": round(seconds, 3),
        "tokens_per_s": round((prompt + new) / seconds, 1),
        "mfu": None if peak is None else flops / seconds / (peak * 1e12),
    }


def run_stages(
    root: Path, args: argparse.Namespace, flops_per_token: float, peak: float | None
) -> list[dict]:
    """Generation, both judge methods and one player's DPO; a report row each."""
    from sparta_hpc.engines.base import ModelSpec
    from sparta_hpc.engines.hf import HFEngine
    from sparta_hpc.engines.tiny import build_tiny_adapter

    base = root / "base"
    players = [f"p{i}" for i in range(4)]
    specs = [
        ModelSpec(name=p, base=str(base), adapter=str(build_tiny_adapter(base, root / p, seed=i + 1)))
        for i, p in enumerate(players)
    ]
    engine = HFEngine(specs, dtype="float32" if args.smoke else "bfloat16", batch_size=args.batch_size)
    games = matches(args.num_prompts, players)
    answers, rows = generate_stage(engine, games, args, flops_per_token, peak)
    rows += judge_stages(engine, games, players, answers, args, flops_per_token, peak)
    engine.close()
    pairs = root / "pairs.jsonl"
    lines = [
        {"prompt": q, "chosen": answers[f"{i}/{a}"], "rejected": answers[f"{i}/{b}"]}
        for i, (q, a, b) in enumerate(games)
    ]
    pairs.write_text("".join(json.dumps(line) + "\n" for line in lines))
    return [*rows, train_stage(root, str(specs[0].adapter), pairs, args.smoke, flops_per_token, peak)]


def generate_stage(
    engine: Any, games: list[tuple[str, str, str]], args: argparse.Namespace, flops: float, peak: float | None
) -> tuple[dict[str, str], list[dict]]:
    """Both players of every match answer (sampled); returns the answers by ``match/player`` and a row."""
    from sparta_hpc.engines.base import Request, Sampling

    requests = [
        Request(request_id=f"{i}/{p}", model=p, prompt=q, seed=i)
        for i, (q, a, b) in enumerate(games)
        for p in (a, b)
    ]
    out, s = timed(engine.generate, requests, Sampling(max_new_tokens=args.max_new_tokens))
    prompt, new = sum(c.num_prompt_tokens for c in out), sum(c.num_new_tokens for c in out)
    answers = {c.request_id: c.text for c in out}
    return answers, [row("generate", f"{len(out)} answers", prompt, new, s, flops * (prompt + new), peak)]


def judge_stages(
    engine: Any,
    games: list[tuple[str, str, str]],
    players: list[str],
    answers: dict[str, str],
    args: argparse.Namespace,
    flops: float,
    peak: float | None,
) -> list[dict]:
    """The two non-playing players judge both answers of every match, by logprob and by generate."""
    from sparta_hpc.engines.base import Request, Sampling
    from sparta_hpc.method import judging

    judge = [
        (f"{i}/{j}/{p}", j, judging.judge_prompt(q, answers[f"{i}/{p}"]))
        for i, (q, a, b) in enumerate(games)
        for j in players
        if j not in (a, b)
        for p in (a, b)
    ]
    logprob = [
        Request(
            request_id=r,
            model=j,
            prompt=t,
            seed=k,
            assistant_prefix=judging.SCORE_PREFIX,
            max_prompt_tokens=512,
        )
        for k, (r, j, t) in enumerate(judge)
    ]
    scores, s = timed(engine.expected_scores, logprob)
    prompt = sum(x.num_prompt_tokens for x in scores)
    rows = [row("judge (logprob)", f"{len(scores)} judgments", prompt, 0, s, flops * prompt, peak)]
    decoded = [
        Request(request_id=r, model=j, prompt=t, seed=k, max_prompt_tokens=512)
        for k, (r, j, t) in enumerate(judge)
    ]
    out, s = timed(engine.generate, decoded, Sampling(max_new_tokens=args.max_new_tokens))
    prompt, new = sum(c.num_prompt_tokens for c in out), sum(c.num_new_tokens for c in out)
    rows.append(
        row("judge (generate)", f"{len(out)} judgments", prompt, new, s, flops * (prompt + new), peak)
    )
    return rows


def train_stage(root: Path, adapter: str, pairs: Path, smoke: bool, flops: float, peak: float | None) -> dict:
    """LoRA-DPO of one player on one pair per match (paper settings: batch 1, max length 512, bf16)."""
    from sparta_hpc.training.dpo import TrainConfig, run_dpo_job

    train = TrainConfig(bf16=not smoke, save_steps=10_000)
    stats = run_dpo_job(
        train,
        base=str(root / "base"),
        adapter_in=adapter,
        adapter_out=str(root / "trained"),
        pairs_path=str(pairs),
        work_dir=str(root / "work"),
        seed=0,
        use_cpu=smoke,
    )
    tokens = dpo_tokens(root / "base", pairs, train.max_length)
    seconds = stats["train_seconds"]
    return row(
        "train (DPO, 1 player)", f"{stats['num_pairs']} pairs", tokens, 0, seconds, 3 * flops * tokens, peak
    )


def dpo_tokens(base: Path, pairs: Path, max_length: int) -> int:
    """Tokens the DPO step sees: chat-templated prompt + response, chosen and rejected, cut at max_length."""
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(base)
    total = 0
    for line in pairs.read_text().splitlines():
        pair = json.loads(line)
        prompt = tok.apply_chat_template([{"role": "user", "content": pair["prompt"]}], tokenize=False,
                                         add_generation_prompt=True)  # fmt: skip
        for side in ("chosen", "rejected"):
            total += min(max_length, len(tok(prompt + pair[side] + tok.eos_token).input_ids))
    return total


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--num-prompts", type=int, default=32, help="matches (one prompt each)")
    parser.add_argument("--max-new-tokens", type=int, default=256)
    parser.add_argument("--batch-size", type=int, default=64, help="HF engine micro-batch")
    parser.add_argument("--out", help="work folder (default: a temporary one)")
    parser.add_argument("--json", help="also write the rows to this JSON file")
    parser.add_argument("--smoke", action="store_true", help="tiny model, 4 prompts, 8 tokens, any device")
    args = parser.parse_args()
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    import torch

    if args.smoke:
        args.num_prompts, args.max_new_tokens = 4, 8
    elif not torch.cuda.is_available():
        raise SystemExit("gpu_iteration: no CUDA GPU found (use --smoke to check the script on a CPU)")
    device = "cuda" if torch.cuda.is_available() else "cpu"
    name = torch.cuda.get_device_name() if device == "cuda" else "CPU"
    peak = next((tflops for key, tflops in PEAK_TFLOPS.items() if key in name), None)
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(args.out or tmp)
        start = time.perf_counter()
        base = build_base(root / "base", SMOKE if args.smoke else QWEN25_05B, device)
        config = json.loads((base / "config.json").read_text())
        from sparta_hpc.tools.cost_model import shape_from_config

        shape = shape_from_config(config, "Qwen2-style random init")
        rows = run_stages(root, args, 2.0 * shape.matmul_params, peak)
        total = time.perf_counter() - start
    print(
        f"gpu_iteration: {name} ({peak or '?'} TFLOP/s bf16 peak), Qwen2-style {shape.params / 1e9:.2f}B "
        f"random init, 4 players, {args.num_prompts} prompts, {args.max_new_tokens} new tokens; "
        f"{total:.0f} s in all"
    )
    widths = (-22, 15, 10, 8, 8, 9, 7)
    header = ("stage", "count", "prompt tok", "new tok", "seconds", "tok/s", "MFU")
    print(" ".join(f"{h:<{-w}}" if w < 0 else f"{h:>{w}}" for h, w in zip(header, widths, strict=True)))
    for r in rows:
        mfu = "n/a" if r["mfu"] is None else f"{100 * r['mfu']:.1f}%"
        print(
            f"{r['stage']:<22} {r['count']:>15} {r['prompt_tokens']:>10,} {r['new_tokens']:>8,} "
            f"{r['seconds']:>8.2f} {r['tokens_per_s']:>9,.0f} {mfu:>7}"
        )
    if args.json:
        Path(args.json).write_text(json.dumps({"device": name, "peak_tflops": peak, "rows": rows}, indent=1))


if __name__ == "__main__":
    main()
