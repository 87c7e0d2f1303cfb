"""The constants of ``sparta-hpc plan``: GPU types, model shapes, token assumptions, and the memory plan.

Every number here is a documented default (docs/plan.md) that a user can replace with one measured on their
own cluster through a calibration file. No torch: a base's shape comes from its ``config.json`` or its name.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from sparta_hpc.config import SpartaConfig

GB = 1e9


@dataclass(frozen=True, kw_only=True)
class GPUType:
    """A GPU model: memory, peak dense bf16 FLOP/s and the fraction of it each kind of work reaches."""

    name: str
    memory_gb: float
    """Memory of one GPU (decimal GB, as sold)."""
    peak_tflops: float
    """Dense bf16 tensor-core peak, TFLOP/s."""
    prefill_mfu: float = 0.45
    """Model FLOPs utilisation of batched prefill in vLLM (compute bound)."""
    decode_mfu: float = 0.12
    """MFU of batched decoding in vLLM with ``decode_batch`` sequences (memory-bandwidth bound: low)."""
    decode_batch: int = 64
    """Sequences decoded together at which ``decode_mfu`` holds (other batches: ``decode_mfu()``)."""
    train_mfu: float = 0.3
    """MFU of LoRA-DPO training (TRL + DeepSpeed, policy and reference passes)."""
    engine_start_s: float = 120.0
    """Seconds a generate/judge/evaluate task spends before its first token (load, engine start)."""
    train_start_s: float = 90.0
    """Seconds a training task spends loading the model and building the trainer."""

    @property
    def prefill_flops(self) -> float:
        return self.peak_tflops * 1e12 * self.prefill_mfu

    @property
    def decode_flops(self) -> float:
        return self.peak_tflops * 1e12 * self.decode_mfu

    @property
    def train_flops(self) -> float:
        return self.peak_tflops * 1e12 * self.train_mfu


GPU_TYPES = {
    gpu.name: gpu
    for gpu in (
        GPUType(name="A100-40GB", memory_gb=40, peak_tflops=312),
        GPUType(name="A100-80GB", memory_gb=80, peak_tflops=312),
        GPUType(name="H100-80GB", memory_gb=80, peak_tflops=989),
        GPUType(name="H200-141GB", memory_gb=141, peak_tflops=989),
        GPUType(name="L40S-48GB", memory_gb=48, peak_tflops=362),
    )
}
"""Known GPU types (``cluster.gpu_type``); peaks from the vendors' data sheets (dense, no sparsity)."""


@dataclass(frozen=True, kw_only=True)
class TokenAssumptions:
    """Token counts the plan cannot know before the run (means over prompts)."""

    question: int = 64
    """Tokens of a task prompt (a GSM8K question is ~60-80)."""
    chat_template: int = 30
    """Tokens the chat template adds around a user turn (Qwen2.5: system prompt and role markers)."""
    judge_template: int = 75
    """Tokens of the judge instruction around the question and the response (method/judging.py)."""
    score_prefix: int = 4
    """Tokens of ``{"score": `` appended for the logprob judge."""


@dataclass(frozen=True, kw_only=True)
class ModelShape:
    """The sizes of a decoder-only transformer that set its FLOPs and memory."""

    name: str
    layers: int
    hidden: int
    intermediate: int
    heads: int
    kv_heads: int
    head_dim: int
    vocab: int
    tied_embeddings: bool

    @property
    def params(self) -> int:
        """All parameters (biases and norms ignored: < 0.1%)."""
        embeddings = self.vocab * self.hidden * (1 if self.tied_embeddings else 2)
        return embeddings + self.layers * (self._attention + 3 * self.hidden * self.intermediate)

    @property
    def matmul_params(self) -> int:
        """Parameters used in matrix products: all but the input embedding (a lookup)."""
        return self.params - (0 if self.tied_embeddings else self.vocab * self.hidden)

    @property
    def kv_bytes_per_token(self) -> int:
        """bf16 KV cache of one token over all layers."""
        return 2 * self.layers * self.kv_heads * self.head_dim * 2

    @property
    def _attention(self) -> int:
        q = self.heads * self.head_dim
        return 2 * self.hidden * q + 2 * self.hidden * self.kv_heads * self.head_dim

    def lora_params(self, rank: int) -> int:
        """Parameters of a rank-``rank`` LoRA on q, k, v and o of every layer."""
        q, kv = self.heads * self.head_dim, self.kv_heads * self.head_dim
        return self.layers * rank * ((self.hidden + q) * 2 + (self.hidden + kv) * 2)


def _qwen25(size: str, layers: int, hidden: int, inter: int, heads: int, kv: int, vocab: int) -> ModelShape:
    return ModelShape(
        name=f"Qwen2.5-{size}", layers=layers, hidden=hidden, intermediate=inter, heads=heads, kv_heads=kv,
        head_dim=hidden // heads, vocab=vocab, tied_embeddings=size in ("0.5B", "1.5B", "3B"),
    )  # fmt: skip


PRESETS = {
    shape.name: shape
    for shape in (
        _qwen25("0.5B", 24, 896, 4864, 14, 2, 151936),
        _qwen25("1.5B", 28, 1536, 8960, 12, 2, 151936),
        _qwen25("3B", 36, 2048, 11008, 16, 2, 151936),
        _qwen25("7B", 28, 3584, 18944, 28, 4, 152064),
        _qwen25("14B", 48, 5120, 13824, 40, 8, 152064),
        _qwen25("32B", 64, 5120, 27648, 40, 8, 152064),
        _qwen25("72B", 80, 8192, 29568, 64, 8, 152064),
        ModelShape(name="tiny", layers=2, hidden=128, intermediate=256, heads=4, kv_heads=2, head_dim=32,
                   vocab=1000, tied_embeddings=False),
    )
}  # fmt: skip
"""Shapes by name: the paper's base family (Qwen2.5, from the models' config.json) and the tiny test base."""


def model_shape(base: str) -> ModelShape:
    """A base's shape: from ``BASE/config.json`` if it exists, else from a size in its name (``-7B``)."""
    config = Path(base) / "config.json"
    if config.is_file():
        return shape_from_config(json.loads(config.read_text()), Path(base).name)
    if base in PRESETS:
        return PRESETS[base]
    sizes = re.findall(r"(\d+(?:\.\d+)?)[bB](?![a-zA-Z])", Path(base).name)
    for size in sizes:
        if f"Qwen2.5-{size}B" in PRESETS:
            return PRESETS[f"Qwen2.5-{size}B"]
    raise ValueError(
        f"cannot tell the size of base {base!r}: give a local path with config.json, or a name with a size "
        f"of the Qwen2.5 family ({', '.join(n for n in PRESETS if n != 'tiny')})"
    )


def shape_from_config(config: dict[str, Any], name: str) -> ModelShape:
    """The shape of a HF ``config.json`` of a Llama/Qwen2-style model."""
    heads = config["num_attention_heads"]
    return ModelShape(
        name=name,
        layers=config["num_hidden_layers"],
        hidden=config["hidden_size"],
        intermediate=config["intermediate_size"],
        heads=heads,
        kv_heads=config.get("num_key_value_heads") or heads,
        head_dim=config.get("head_dim") or config["hidden_size"] // heads,
        vocab=config["vocab_size"],
        tied_embeddings=bool(config.get("tie_word_embeddings", False)),
    )


def inference_gb(shape: ModelShape, cfg: SpartaConfig, tp: int, sequences: int) -> float:
    """GPU memory of one vLLM engine per GPU: weights, LoRA slots, workspace and KV for ``sequences``."""
    tokens = 30 + 64 + cfg.judge.max_new_tokens + cfg.generate.max_new_tokens
    loras = len(cfg.models) * shape.lora_params(cfg.engine.max_lora_rank or 16) * 2
    kv = sequences * tokens * shape.kv_bytes_per_token
    return (2 * shape.params + loras + kv) / tp / GB + 2.0  # + activations and CUDA graphs


def train_gb(shape: ModelShape, cfg: SpartaConfig, ranks: int, zero3: bool, checkpointing: bool) -> float:
    """GPU memory of one rank of LoRA-DPO: base weights (sharded under ZeRO-3), LoRA with Adam, activations.

    Activations: 34 x hidden bytes per token and layer in bf16 (Korthikanti et al. 2022, flash attention);
    2 x hidden with gradient checkpointing (layer inputs) plus one layer in full. Chosen and rejected run
    as one batch, so a step holds 2 x batch_size x max_length tokens; logits cost 10 bytes per vocab entry.
    """
    tokens = 2 * cfg.train.batch_size * cfg.train.max_length
    per_layer = (2 if checkpointing else 34) * shape.hidden * tokens
    activations = per_layer * shape.layers + (34 * shape.hidden * tokens if checkpointing else 0)
    logits = 10 * tokens * shape.vocab
    lora = 18 * shape.lora_params(cfg.train.lora_rank)
    weights = 2 * shape.params / (ranks if zero3 else 1)
    return (weights + lora + activations + logits) / GB + 3.0  # + CUDA context, buffers, fragmentation


def decode_mfu(
    cfg: SpartaConfig, gpu: GPUType, shape: ModelShape, *, requests: int, prompt: int, new: int
) -> tuple[int, float]:
    """Sequences one engine decodes together and the MFU its decoding reaches with them.

    The batch is the requests of one engine call (a saved chunk; ``engine.batch_size`` for the HF engine), at
    most ``engine.max_num_seqs`` and what the KV cache holds of ``prompt + new`` tokens each. Decoding is
    memory-bound: a step reads the weights once and the KV cache of every sequence (``prompt + new / 2``
    tokens on average) and yields one token per sequence, so the MFU scales with tokens per byte read,
    ``b / (weights + b x context)``, from ``gpu.decode_mfu`` at ``gpu.decode_batch`` sequences; it stays below
    ``gpu.prefill_mfu`` (compute bound).
    """
    tp = cfg.engine.tensor_parallel_size
    room = cfg.engine.gpu_memory_utilization * gpu.memory_gb - inference_gb(shape, cfg, tp, 0)
    fits = int(max(0.0, room) * tp * GB / shape.kv_bytes_per_token // (prompt + new))
    requests = min(requests, cfg.engine.batch_size) if cfg.engine.kind == "hf" else requests
    batch = max(1, min(requests, cfg.engine.max_num_seqs, fits))
    weights, context = 2 * shape.params, (prompt + new / 2) * shape.kv_bytes_per_token

    def per_byte(b: int) -> float:
        return b / (weights + b * context)

    return batch, min(gpu.prefill_mfu, gpu.decode_mfu * per_byte(batch) / per_byte(gpu.decode_batch))


def memory_plan(cfg: SpartaConfig, shape: ModelShape, gpu: GPUType) -> list[dict[str, Any]]:
    """Per base size and card size: whether generation/judging and training fit on one GPU, else what."""
    shapes = {shape.name: shape, "Qwen2.5-7B": PRESETS["Qwen2.5-7B"], "Qwen2.5-14B": PRESETS["Qwen2.5-14B"]}
    rows = []
    for s in shapes.values():
        for memory in sorted({40.0, 80.0, float(gpu.memory_gb)}):
            rows.append(_inference_row(s, cfg, memory))
            rows.append(_train_row(s, cfg, memory))
    return rows


def _inference_row(shape: ModelShape, cfg: SpartaConfig, memory: float) -> dict[str, Any]:
    usable = cfg.engine.gpu_memory_utilization * memory
    need = inference_gb(shape, cfg, 1, 16)
    tp = next((k for k in (1, 2, 4, 8) if inference_gb(shape, cfg, k, 16) <= usable), None)
    if tp == 1:
        room = (usable - inference_gb(shape, cfg, 1, 0)) * GB / shape.kv_bytes_per_token
        verdict = f"fits on 1 GPU (KV cache room: ~{room / 1000:.0f}k tokens)"
    else:
        verdict = f"needs engine.tensor_parallel_size={tp}" if tp else "does not fit on 8 GPUs"
    return _row(shape, memory, "generate/judge", need, verdict)


def _train_row(shape: ModelShape, cfg: SpartaConfig, memory: float) -> dict[str, Any]:
    usable = memory * 0.95
    need = train_gb(shape, cfg, 1, zero3=False, checkpointing=cfg.train.gradient_checkpointing)
    if need <= usable:
        verdict = "fits on 1 GPU (no sharding; ZeRO-2 for data parallelism)"
    else:
        ranks = next(
            (
                k
                for k in (2, 4, 8, 16)
                if train_gb(shape, cfg, k, True, cfg.train.gradient_checkpointing) <= usable
            ),
            None,
        )
        verdict = f"needs ZeRO-3 over >= {ranks} GPUs (train.num_ranks)" if ranks else "needs ZeRO-3 offload"
        if not cfg.train.gradient_checkpointing and train_gb(shape, cfg, 1, False, True) <= usable:
            verdict += ", or 1 GPU with train.gradient_checkpointing=true"
    return _row(shape, memory, "train", need, verdict)


def _row(shape: ModelShape, memory: float, stage: str, need: float, verdict: str) -> dict[str, Any]:
    return {
        "base": shape.name,
        "params_b": round(shape.params / 1e9, 2),
        "gpu_memory_gb": memory,
        "stage": stage,
        "need_gb_one_gpu": round(need, 1),
        "verdict": verdict,
        "fits_one_gpu": verdict.startswith("fits"),
    }
