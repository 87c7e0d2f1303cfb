"""The engine interface: everything the pipeline asks of a model runtime (HF transformers or vLLM)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Protocol

from omegaconf import MISSING


@dataclass
class ModelConfig:
    """A model as the config names it: a base and an optional LoRA adapter (local paths, or ``tiny``)."""

    name: str = MISSING
    """Unique name; used in records, file names and job names."""
    base: str = MISSING
    """Directory of the base model (safetensors), or ``tiny`` for the built-in tiny base."""
    adapter: str | None = None
    """Directory of the player's LoRA adapter, ``tiny`` (random tiny adapter) or null (the bare base)."""


@dataclass(frozen=True, kw_only=True)
class ModelSpec:
    """A player: a base model directory and an optional LoRA adapter directory on top of it."""

    name: str
    base: str
    adapter: str | None = None


@dataclass(frozen=True, kw_only=True)
class Sampling:
    """Decoding settings of one batch; ``greedy`` ignores temperature/top-k/top-p.

    ``json_score`` constrains every output to ``{"score": N}``, N in 1..10 (structured outputs, vLLM only).
    """

    max_new_tokens: int
    temperature: float = 0.7
    top_k: int = 50
    top_p: float = 0.95
    greedy: bool = False
    json_score: bool = False


@dataclass(frozen=True, kw_only=True)
class Request:
    """One chat turn for one player.

    ``prompt`` is the user message; the engine applies the player's chat template and then appends
    ``assistant_prefix`` (e.g. ``{"score": `` for the logprob judge). ``max_prompt_tokens`` right-truncates
    the templated prompt (the released judge's 512-token cut); ``None`` never truncates. ``seed`` makes the
    sampled continuation reproducible.
    """

    request_id: str
    model: str
    prompt: str
    seed: int
    assistant_prefix: str = ""
    max_prompt_tokens: int | None = None


@dataclass(frozen=True, kw_only=True)
class Completion:
    """Generated text and token counts of one request."""

    request_id: str
    text: str
    num_prompt_tokens: int
    num_new_tokens: int


@dataclass(frozen=True, kw_only=True)
class ExpectedScore:
    """The logprob judge's expected score over 1..10 and the probability mass those ten scores carry."""

    request_id: str
    score: float
    mass: float
    num_prompt_tokens: int


class Engine(Protocol):
    """A loaded pool of players that can answer and score requests in batches."""

    def generate(self, requests: Sequence[Request], sampling: Sampling) -> list[Completion]:
        """Answer every request (any mix of players), in request order."""
        ...

    def expected_scores(self, requests: Sequence[Request]) -> list[ExpectedScore]:
        """For prompts ending in ``{"score": ``: the expected next score over 1..10, in request order."""
        ...

    def close(self) -> None:
        """Free the models."""
        ...
