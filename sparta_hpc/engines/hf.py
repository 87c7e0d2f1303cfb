"""The HF transformers + peft engine: every player of a base shares one loaded model (CPU and debug runs).

Each distinct base is loaded once; each player's LoRA is a named adapter on it, and a player without an
adapter runs the base with adapters disabled. Requests are grouped by player, in order of first appearance,
and cut into micro-batches of ``batch_size``. Sampling is seeded per micro-batch from its requests' seeds, so
the same requests in the same order give byte-identical outputs, whatever ran before (a resumed job
reproduces its records). A request's output does depend on the other requests of its micro-batch (padding,
one random stream per batch): keep ``batch_size`` and the request order when rerunning.

Prompt layout: the chat template with the request's prompt as the user turn and the generation prompt, cut
to ``max_prompt_tokens`` tokens (the released judge's right truncation), then ``assistant_prefix``, which is
never cut, so the logprob judge always reads the token after ``{"score": ``.
"""

from __future__ import annotations

import contextlib
import gc
import hashlib
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from sparta_hpc.engines.base import Completion, ExpectedScore, ModelSpec, Request, Sampling
from sparta_hpc.files import require_safetensors_adapter

if TYPE_CHECKING:
    import torch

SCORE_PREFIX = '{"score": '
DTYPES = ("float32", "bfloat16", "float16")


@dataclass(frozen=True, kw_only=True)
class ScoreTokens:
    """Token ids the logprob judge reads after ``{"score": ``.

    ``digits[k]`` is the id of ``str(k + 1)`` for k = 0..8. ``ten`` is the id of ``"10"`` when it is one
    token; otherwise ``"10"`` is ``"1"`` followed by ``zero``, and P(10) = P("1") P("0" | "1"),
    P(1) = P("1") (1 - P("0" | "1")).
    """

    digits: tuple[int, ...]
    ten: int | None
    zero: int


@dataclass
class _LoadedBase:
    """One loaded base model (a PeftModel when any of its players has an adapter) and its tokenizer."""

    model: Any
    tokenizer: Any
    adapter_names: dict[str, str]
    eos_ids: list[int]
    pad_id: int
    score_tokens: ScoreTokens | None = None


class HFEngine:
    """The Engine protocol on HF transformers + peft."""

    def __init__(
        self,
        models: Sequence[ModelSpec],
        *,
        dtype: str = "float32",
        batch_size: int = 8,
    ) -> None:
        names = [m.name for m in models]
        if not models or len(set(names)) != len(names):
            raise ValueError(f"models must be a non-empty list of players with unique names, got {names}")
        if dtype not in DTYPES:
            raise ValueError(f"dtype={dtype!r} is not one of {DTYPES}")
        if batch_size < 1:
            raise ValueError(f"batch_size={batch_size} must be >= 1")
        self.batch_size = batch_size
        self._players = {m.name: m for m in models}
        self._bases: dict[str, _LoadedBase] = {}
        for base in dict.fromkeys(m.base for m in models):
            players = [m for m in models if m.base == base]
            self._bases[base] = _load_base(base, players, dtype)

    def generate(self, requests: Sequence[Request], sampling: Sampling) -> list[Completion]:
        """Answer every request (any mix of players), in request order."""
        _check_sampling(sampling)
        results: list[Completion | None] = [None] * len(requests)
        for player, indices in self._micro_batches(requests):
            batch = [requests[i] for i in indices]
            for i, completion in zip(indices, self._generate_batch(player, batch, sampling), strict=True):
                results[i] = completion
        return results  # type: ignore[return-value]

    def expected_scores(self, requests: Sequence[Request]) -> list[ExpectedScore]:
        """For prompts ending in ``{"score": ``: the expected next score over 1..10, in request order."""
        results: list[ExpectedScore | None] = [None] * len(requests)
        for player, indices in self._micro_batches(requests):
            batch = [requests[i] for i in indices]
            for i, score in zip(indices, self._score_batch(player, batch), strict=True):
                results[i] = score
        return results  # type: ignore[return-value]

    def close(self) -> None:
        """Free the models."""
        self._bases.clear()
        gc.collect()

    def _micro_batches(self, requests: Sequence[Request]) -> Iterator[tuple[ModelSpec, list[int]]]:
        """Indices of the requests grouped by player (first-appearance order), in chunks of batch_size."""
        by_player: dict[str, list[int]] = {}
        for i, request in enumerate(requests):
            if request.model not in self._players:
                raise ValueError(f"request {request.request_id!r} names unknown player {request.model!r}")
            if request.max_prompt_tokens is not None and request.max_prompt_tokens < 1:
                raise ValueError(f"request {request.request_id!r}: max_prompt_tokens must be >= 1 or None")
            by_player.setdefault(request.model, []).append(i)
        for name, indices in by_player.items():
            for start in range(0, len(indices), self.batch_size):
                yield self._players[name], indices[start : start + self.batch_size]

    def _activate(self, player: ModelSpec) -> tuple[_LoadedBase, contextlib.AbstractContextManager[Any]]:
        """The player's loaded base with its adapter selected, and the context to run it in."""
        base = self._bases[player.base]
        if player.adapter is not None:
            base.model.set_adapter(base.adapter_names[player.name])
            return base, contextlib.nullcontext()
        if base.adapter_names:
            return base, base.model.disable_adapter()
        return base, contextlib.nullcontext()

    def _generate_batch(
        self, player: ModelSpec, batch: list[Request], sampling: Sampling
    ) -> list[Completion]:
        """Generate one micro-batch of one player, seeded from its requests' seeds."""
        import torch

        base, context = self._activate(player)
        prompts = [encode_prompt(base.tokenizer, r) for r in batch]
        input_ids, attention_mask = _left_pad(prompts, base.pad_id, base.model.device)
        config = _generation_config(sampling, base.pad_id, base.eos_ids)
        torch.manual_seed(batch_seed(batch))
        with context, torch.inference_mode():
            output = base.model.generate(
                input_ids=input_ids, attention_mask=attention_mask, generation_config=config
            )
        completions = []
        for request, prompt, row in zip(
            batch, prompts, output[:, input_ids.shape[1] :].tolist(), strict=True
        ):
            new = until_eos(row, base.eos_ids)
            text = base.tokenizer.decode(new, skip_special_tokens=True)
            completions.append(
                Completion(
                    request_id=request.request_id,
                    text=text,
                    num_prompt_tokens=len(prompt),
                    num_new_tokens=len(new),
                )
            )
        return completions

    def _score_batch(self, player: ModelSpec, batch: list[Request]) -> list[ExpectedScore]:
        """One forward over a micro-batch; the expected score from the next-token distribution."""
        import torch

        base, context = self._activate(player)
        if base.score_tokens is None:
            base.score_tokens = score_tokens(base.tokenizer)
        tokens = base.score_tokens
        prompts = [encode_prompt(base.tokenizer, r) for r in batch]
        input_ids, attention_mask = _left_pad(prompts, base.pad_id, base.model.device)
        if tokens.ten is None:  # one more position: the distribution after "1", to tell 1 from 10
            one = torch.full(
                (len(batch), 1), tokens.digits[0], dtype=input_ids.dtype, device=input_ids.device
            )
            input_ids = torch.cat([input_ids, one], dim=1)
            attention_mask = torch.cat([attention_mask, torch.ones_like(one)], dim=1)
        position_ids = (attention_mask.cumsum(-1) - 1).clamp(min=0)
        keep = 1 if tokens.ten is not None else 2
        with context, torch.inference_mode():
            logits = base.model(
                input_ids=input_ids,
                attention_mask=attention_mask,
                position_ids=position_ids,
                use_cache=False,
                logits_to_keep=keep,
            ).logits[:, -keep:]
        probs = score_probabilities(logits.double().softmax(-1), tokens)
        mass = probs.sum(-1)
        values = torch.arange(1, 11, dtype=probs.dtype, device=probs.device)
        expected = (probs / mass[:, None] * values).sum(-1)
        return [
            ExpectedScore(
                request_id=r.request_id, score=float(s), mass=float(m), num_prompt_tokens=len(prompt)
            )
            for r, s, m, prompt in zip(batch, expected, mass, prompts, strict=True)
        ]


def score_probabilities(probs: torch.Tensor, tokens: ScoreTokens) -> torch.Tensor:
    """P(score = 1..10), shape (batch, 10), from next-token probabilities of shape (batch, positions, vocab).

    The last position is the distribution after the prompt; with a two-token "10" the prompt is followed by
    "1" and the last two positions are the distributions after the prompt and after the "1".
    """
    import torch

    first = probs[:, -1] if tokens.ten is not None else probs[:, -2]
    digits = first[:, list(tokens.digits)]
    if tokens.ten is not None:
        return torch.cat([digits, first[:, tokens.ten, None]], dim=1)
    zero_after_one = probs[:, -1, tokens.zero]
    p1 = digits[:, 0]
    return torch.cat(
        [(p1 * (1 - zero_after_one))[:, None], digits[:, 1:], (p1 * zero_after_one)[:, None]], dim=1
    )


def score_tokens(tokenizer: Any) -> ScoreTokens:
    """Find the ids of "1".."10" as the tokenizer writes them right after ``{"score": ``."""
    context = tokenizer(SCORE_PREFIX, add_special_tokens=False).input_ids
    suffixes = {}
    for text in [str(n) for n in range(11)]:
        ids = tokenizer(SCORE_PREFIX + text, add_special_tokens=False).input_ids
        if ids[: len(context)] != context:
            raise ValueError(
                f"the tokenizer merges {SCORE_PREFIX!r} with {text!r}: the logprob judge cannot read it"
            )
        suffixes[text] = ids[len(context) :]
    if any(len(suffixes[str(n)]) != 1 for n in range(10)):
        raise ValueError(f"the logprob judge needs single-token digits 0-9, got {suffixes}")
    digits = tuple(suffixes[str(n)][0] for n in range(1, 10))
    zero = suffixes["0"][0]
    ten = suffixes["10"]
    if len(ten) == 1:
        return ScoreTokens(digits=digits, ten=ten[0], zero=zero)
    if ten == [digits[0], zero]:
        return ScoreTokens(digits=digits, ten=None, zero=zero)
    raise ValueError(f"the logprob judge cannot read '10' tokenized as {ten}")


def batch_seed(batch: Sequence[Request]) -> int:
    """A 63-bit sampling seed derived from the seeds of a micro-batch's requests."""
    digest = hashlib.sha256(",".join(str(r.seed) for r in batch).encode()).digest()
    return int.from_bytes(digest[:8], "little") & (2**63 - 1)


def _load_base(base: str, players: list[ModelSpec], dtype: str) -> _LoadedBase:
    """Load a base and its tokenizer once, and every player's adapter on it under a safe internal name."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    trust_remote_code = any(p.trust_remote_code for p in players)
    tokenizer = AutoTokenizer.from_pretrained(base, trust_remote_code=trust_remote_code)
    model: Any = AutoModelForCausalLM.from_pretrained(
        base, dtype=getattr(torch, dtype), use_safetensors=True, trust_remote_code=trust_remote_code
    )
    adapters = {p.name: f"player_{i}" for i, p in enumerate(players) if p.adapter is not None}
    if adapters:
        from peft import PeftModel

        with_adapter = [(p.name, p.adapter) for p in players if p.adapter is not None]
        first, first_adapter = with_adapter[0]
        model = PeftModel.from_pretrained(
            model, require_safetensors_adapter(first_adapter), adapter_name=adapters[first]
        )
        for name, adapter in with_adapter[1:]:
            model.load_adapter(require_safetensors_adapter(adapter), adapter_name=adapters[name])
    model.to("cuda" if torch.cuda.is_available() else "cpu").eval()
    eos_ids = eos_token_ids(base, tokenizer, model.generation_config.eos_token_id)
    pad_id = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else eos_ids[0]
    return _LoadedBase(
        model=model, tokenizer=tokenizer, adapter_names=adapters, eos_ids=eos_ids, pad_id=pad_id
    )


def eos_token_ids(base: str, tokenizer: Any, generation_eos: int | list[int] | None) -> list[int]:
    """The tokenizer's EOS id, then the generation config's, without repeats; raises if there is none."""
    eos = generation_eos if isinstance(generation_eos, list) else [generation_eos]
    eos_ids = [i for i in dict.fromkeys([tokenizer.eos_token_id, *eos]) if i is not None]
    if not eos_ids:
        raise ValueError(f"{base}: neither the tokenizer nor the generation config names an EOS token")
    return eos_ids


def encode_prompt(tokenizer: Any, request: Request) -> list[int]:
    """Chat-templated prompt ids, cut to max_prompt_tokens, followed by the assistant prefix."""
    messages = [{"role": "user", "content": request.prompt}]
    text = tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)
    ids = list(tokenizer(text, add_special_tokens=False).input_ids)
    if request.max_prompt_tokens is not None:
        ids = ids[: request.max_prompt_tokens]
    if request.assistant_prefix:
        ids += tokenizer(request.assistant_prefix, add_special_tokens=False).input_ids
    return ids


def _left_pad(
    prompts: list[list[int]], pad_id: int, device: Any = "cpu"
) -> tuple[torch.Tensor, torch.Tensor]:
    """Left-padded input ids and attention mask, on ``device``."""
    import torch

    width = max(len(p) for p in prompts)
    input_ids = torch.full((len(prompts), width), pad_id, dtype=torch.long)
    attention_mask = torch.zeros((len(prompts), width), dtype=torch.long)
    for row, prompt in enumerate(prompts):
        if prompt:
            input_ids[row, width - len(prompt) :] = torch.tensor(prompt, dtype=torch.long)
            attention_mask[row, width - len(prompt) :] = 1
    return input_ids.to(device), attention_mask.to(device)


def _generation_config(sampling: Sampling, pad_id: int, eos_ids: list[int]) -> Any:
    """A fresh GenerationConfig (ignores the model's defaults) for greedy or sampled decoding."""
    from transformers import GenerationConfig

    common: dict[str, Any] = {
        "max_new_tokens": sampling.max_new_tokens,
        "pad_token_id": pad_id,
        "eos_token_id": eos_ids,
    }
    if sampling.greedy:
        return GenerationConfig(do_sample=False, **common)
    return GenerationConfig(
        do_sample=True, temperature=sampling.temperature, top_k=sampling.top_k, top_p=sampling.top_p, **common
    )


def until_eos(row: list[int], eos_ids: list[int]) -> list[int]:
    """The generated ids up to and including the first EOS (everything after it is padding)."""
    for i, token in enumerate(row):
        if token in eos_ids:
            return row[: i + 1]
    return row


def _check_sampling(sampling: Sampling) -> None:
    """Reject settings that HF generate would reject or silently change."""
    if sampling.max_new_tokens < 1:
        raise ValueError(f"max_new_tokens={sampling.max_new_tokens} must be >= 1")
    if sampling.json_score:
        raise ValueError("the HF engine cannot constrain outputs: use engine.kind=vllm or no json_score")
    if not sampling.greedy and (
        sampling.temperature <= 0 or not 0 < sampling.top_p <= 1 or sampling.top_k < 0
    ):
        raise ValueError(f"invalid sampling {sampling}: need temperature > 0, 0 < top_p <= 1, top_k >= 0")
