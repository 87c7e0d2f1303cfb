"""VLLMEngine for real (vLLM's CPU build, in .venv-vllm) against the HF engine on tiny models.

Tests marked ``vllm`` run with ``.venv-vllm/bin/python -m pytest -m vllm`` (scripts/test.sh); they skip when
vllm is not importable, except under ``CI=true`` where that fails. The adapter checks run everywhere.
"""

from __future__ import annotations

import json
import os
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from sparta_hpc.engines.base import EngineConfig, ModelSpec, Request, Sampling
from sparta_hpc.engines.hf import SCORE_PREFIX, HFEngine
from sparta_hpc.engines.vllm import check_adapter
from sparta_hpc.method import judging

GREEDY = Sampling(max_new_tokens=24, greedy=True)
SAMPLED = Sampling(max_new_tokens=12)
PROMPTS = ["What is 3 + 4?", "Explain the water cycle.", "Rate this answer from 1 to 10: the sky is blue."]
CPU_ENGINE = {"kind": "vllm", "dtype": "float32", "enforce_eager": True, "kv_cache_gb": 0.25}


def require_vllm() -> None:
    """Skip without vllm, with the way to get it; under CI=true a missing vllm fails the test."""
    try:
        import vllm  # noqa: F401
    except ImportError as e:
        reason = f"vllm is not importable ({e}); `bash scripts/setup-vllm.sh` builds .venv-vllm with it"
        if os.environ.get("CI", "").lower() == "true":
            pytest.fail(f"CI=true: {reason}")
        pytest.skip(reason)


def _split_ten_base(tiny_base: Path, out: Path) -> Path:
    """A copy of the tiny base whose tokenizer writes "10" as "1", "0" (like Qwen's)."""
    base = Path(shutil.copytree(tiny_base, out))
    data = json.loads((base / "tokenizer.json").read_text())
    data["model"]["merges"] = [m for m in data["model"]["merges"] if m != ["1", "0"]]
    (base / "tokenizer.json").write_text(json.dumps(data))
    return base


def _dpo_adapter(tiny_base: Path, root: Path) -> Path:
    """A fresh rank-4 LoRA (attention and MLP targets) trained by the project's DPO job."""
    from sparta_hpc.training.dpo import TrainConfig, run_dpo_job

    root.mkdir(parents=True)
    pairs = root / "pairs.jsonl"
    rows = [{"prompt": f"What is {i} + 1?", "chosen": f"It is {i + 1}.", "rejected": "No."} for i in range(4)]
    pairs.write_text("".join(json.dumps(row) + "\n" for row in rows))
    train = TrainConfig(
        learning_rate=1e-2, max_length=64, save_steps=100, bf16=False, lora_rank=4,
        lora_targets=["q_proj", "v_proj", "gate_proj", "down_proj"],
    )  # fmt: skip
    out = root / "adapter"
    run_dpo_job(
        train, base=str(tiny_base), adapter_in=None, adapter_out=str(out), pairs_path=str(pairs),
        work_dir=str(root / "work"), seed=3,
    )  # fmt: skip
    return out


@pytest.fixture(scope="module")
def players(
    tiny_base: Path, tiny_adapters: list[Path], tmp_path_factory: pytest.TempPathFactory
) -> list[Any]:
    """Two base families: four players on the tiny base (two adapters, a DPO adapter, none), one on a copy
    whose tokenizer splits "10"."""
    require_vllm()
    root = tmp_path_factory.mktemp("vllm")
    split = _split_ten_base(tiny_base, root / "split-base")
    trained = _dpo_adapter(tiny_base, root / "dpo")
    return [
        ModelSpec(name="alpha", base=str(tiny_base), adapter=str(tiny_adapters[0])),
        ModelSpec(name="beta", base=str(tiny_base), adapter=str(tiny_adapters[1])),
        ModelSpec(name="trained", base=str(tiny_base), adapter=str(trained)),
        ModelSpec(name="plain", base=str(tiny_base)),
        ModelSpec(name="split", base=str(split), adapter=str(tiny_adapters[1])),
    ]


@pytest.fixture(scope="module")
def engine(players: list[ModelSpec]) -> Iterator[Any]:
    from sparta_hpc.engines.vllm import VLLMEngine

    engine = VLLMEngine(players, EngineConfig(**CPU_ENGINE, max_model_len=512))
    yield engine
    engine.close()


@pytest.fixture(scope="module")
def hf(players: list[ModelSpec]) -> HFEngine:
    return HFEngine(players, dtype="float32", batch_size=1)


def _requests(players: list[ModelSpec], **kwargs: Any) -> list[Request]:
    return [
        Request(request_id=f"{p.name}/{i}", model=p.name, prompt=prompt, seed=100 + i, **kwargs)
        for p in players
        for i, prompt in enumerate(PROMPTS)
    ]


@pytest.mark.vllm
def test_greedy_matches_hf_for_every_player(engine: Any, hf: HFEngine, players: list[ModelSpec]) -> None:
    requests = _requests(players)
    ours = engine.generate(requests, GREEDY)
    assert ours == hf.generate(requests, GREEDY)  # text and token counts, token for token
    assert [c.request_id for c in ours] == [r.request_id for r in requests]
    same_base = [c.text for c in ours[: 4 * len(PROMPTS) : len(PROMPTS)]]
    assert len(set(same_base)) == 4  # each adapter (or none) of the tiny base's players really applied


@pytest.mark.vllm
def test_logprob_scores_match_hf(engine: Any, hf: HFEngine, players: list[ModelSpec]) -> None:
    from transformers import AutoTokenizer

    from sparta_hpc.engines.hf import score_tokens

    assert score_tokens(AutoTokenizer.from_pretrained(players[-1].base)).ten is None  # "10" is two tokens
    requests = _requests(players, assistant_prefix=SCORE_PREFIX)
    requests += _requests(players[:1], assistant_prefix=SCORE_PREFIX, max_prompt_tokens=6)
    ours, reference = engine.expected_scores(requests), hf.expected_scores(requests)
    for got, want in zip(ours, reference, strict=True):
        assert got.request_id == want.request_id and got.num_prompt_tokens == want.num_prompt_tokens
        assert 1 <= got.score <= 10 and 0 < got.mass < 1
        assert got.score == pytest.approx(want.score, abs=1e-4)
        assert got.mass == pytest.approx(want.mass, rel=1e-3)
    assert len({round(s.score, 3) for s in ours}) > len(players)


@pytest.mark.vllm
def test_sampling_is_seeded_per_request(engine: Any, players: list[ModelSpec]) -> None:
    requests = _requests(players)
    first = engine.generate(requests, SAMPLED)
    assert engine.generate(requests, SAMPLED) == first
    reseeded = [Request(**{**r.__dict__, "seed": r.seed + 1}) for r in requests]
    changed = engine.generate(reseeded, SAMPLED)
    assert sum(a.text != b.text for a, b in zip(first, changed, strict=True)) >= len(requests) // 2
    assert all(0 < c.num_new_tokens <= SAMPLED.max_new_tokens for c in first)


@pytest.mark.vllm
def test_seeded_batch_larger_than_one_engine_step(engine: Any) -> None:
    """More distinct prompt tokens than one engine step takes (identical prompts would hit the prefix cache):
    on CPU this crashed vLLM 0.32 while chunked prefill was on (see engines/vllm.py)."""
    requests = [
        Request(
            request_id=str(i),
            model="alpha",
            prompt=judging.judge_prompt(f"What is {i} + 30?", f"{i} forty two because " * 30),
            seed=i,
        )
        for i in range(40)
    ]
    completions = engine.generate(requests, Sampling(max_new_tokens=3))
    assert sum(c.num_prompt_tokens for c in completions) > 8192
    assert all(c.num_new_tokens == 3 for c in completions)


@pytest.mark.vllm
def test_generate_judge_parses_only_when_structured(engine: Any, players: list[ModelSpec]) -> None:
    prompts = [judging.judge_prompt(p, "Four and three make seven.") for p in PROMPTS]
    requests = [
        Request(request_id=f"{p.name}/{i}", model=p.name, prompt=text, seed=i, max_prompt_tokens=512)
        for p in players
        for i, text in enumerate(prompts)
    ]
    free = engine.generate(requests, Sampling(max_new_tokens=32))
    structured = engine.generate(requests, Sampling(max_new_tokens=32, json_score=True))
    scores = [judging.parse_score(c.text) for c in structured]
    assert all(s is not None and 1 <= s <= 10 for s in scores), [c.text for c in structured]
    assert sum(judging.parse_score(c.text) is None for c in free) > len(free) // 2  # random weights


@pytest.mark.vllm
def test_jobs_pick_the_vllm_engine(tiny_base: Path) -> None:
    require_vllm()
    from sparta_hpc.config import load_config
    from sparta_hpc.engines.vllm import VLLMEngine
    from sparta_hpc.jobs.common import load_engine

    overrides = [f"engine.{key}={str(value).lower()}" for key, value in CPU_ENGINE.items()]
    cfg = load_config(None, overrides)
    engine = load_engine(cfg, {"solo": {"base": str(tiny_base), "adapter": None}})
    try:
        assert isinstance(engine, VLLMEngine)
        request = Request(request_id="r", model="solo", prompt="Hi", seed=0)
        assert engine.generate([request], GREEDY)[0].num_new_tokens > 0
    finally:
        engine.close()


def test_adapter_check_accepts_peft_and_refuses_extras(tiny_adapters: list[Path], tmp_path: Path) -> None:
    from safetensors.torch import load_file, save_file

    assert check_adapter(tiny_adapters[0]) == 8
    extra = Path(shutil.copytree(tiny_adapters[0], tmp_path / "extra"))
    weights = load_file(extra / "adapter_model.safetensors")
    save_file(
        {**weights, "base_model.model.lm_head.weight": next(iter(weights.values())).clone()}, extra / "x"
    )
    (extra / "x").replace(extra / "adapter_model.safetensors")
    with pytest.raises(ValueError, match="non-LoRA weights"):
        check_adapter(extra)
    saved = Path(shutil.copytree(tiny_adapters[0], tmp_path / "saved"))
    config = json.loads((saved / "adapter_config.json").read_text())
    (saved / "adapter_config.json").write_text(json.dumps({**config, "modules_to_save": ["lm_head"]}))
    with pytest.raises(ValueError, match="modules_to_save"):
        check_adapter(saved)


def test_each_array_task_gets_its_own_ports(monkeypatch: pytest.MonkeyPatch) -> None:
    from sparta_hpc.engines.vllm import PORTS_PER_TASK, _set_environment, array_task_index

    monkeypatch.setenv("SLURM_ARRAY_TASK_ID", "3")
    monkeypatch.delenv("VLLM_PORT", raising=False)
    _set_environment(EngineConfig(kind="vllm", port_base=30000), array_task_index())
    assert os.environ["VLLM_PORT"] == str(30000 + 3 * PORTS_PER_TASK)


@pytest.mark.vllm
def test_real_smollm2_greedy_matches_hf(smollm2: Path) -> None:
    """SmolLM2-135M-Instruct, converted from its GGUF by the .venv tests (vLLM loads the converted folder:
    .venv-vllm needs no gguf package): its real chat template, EOS and scores, as the HF engine has them."""
    require_vllm()
    from sparta_hpc.engines.vllm import VLLMEngine

    spec = [ModelSpec(name="smol", base=str(smollm2))]
    requests = [
        Request(request_id=str(i), model="smol", prompt=p, seed=i)
        for i, p in enumerate(["What is the capital of France?", "What is 3 + 4?"])
    ]
    judge = [
        Request(
            request_id="j", model="smol", prompt=judging.judge_prompt("What is 3 + 4?", "7"), seed=0,
            assistant_prefix=SCORE_PREFIX, max_prompt_tokens=512,
        )
    ]  # fmt: skip
    engine = VLLMEngine(spec, EngineConfig(**CPU_ENGINE, max_model_len=1024))
    try:
        ours, our_score = engine.generate(requests, GREEDY), engine.expected_scores(judge)
    finally:
        engine.close()
    hf = HFEngine(spec, dtype="float32")
    assert ours == hf.generate(requests, GREEDY)
    assert "Paris" in ours[0].text and ours[0].num_new_tokens < GREEDY.max_new_tokens  # stopped at EOS
    assert our_score[0].score == pytest.approx(hf.expected_scores(judge)[0].score, abs=1e-3)
