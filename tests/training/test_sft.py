"""build-pool: LoRA experts SFT-trained from one base, one dataset each (real TRL SFT + PEFT, tiny base)."""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

import pytest
import yaml

from sparta_hpc.config.pool import load_pool_config
from sparta_hpc.errors import ConfigError
from sparta_hpc.training.sft import ExpertConfig, PoolConfig, read_examples, train_expert


def _write_jsonl(path: Path, rows: list[Any]) -> Path:
    path.write_text("".join((row if isinstance(row, str) else json.dumps(row)) + "\n" for row in rows))
    return path


def _datasets(root: Path) -> dict[str, Path]:
    """Two experts that learn different things: one always agrees, one adds one."""
    agree = [{"prompt": f"Is {i} a number?", "completion": "Yes, it is."} for i in range(12)]
    add = [
        {
            "messages": [
                {"role": "user", "content": f"What is {i} + 1?"},
                {"role": "assistant", "content": str(i + 1)},
            ]
        }
        for i in range(12)
    ]
    return {"agree": _write_jsonl(root / "agree.jsonl", agree), "add": _write_jsonl(root / "add.jsonl", add)}


def _pool_yaml(root: Path, base: Path, data: dict[str, Path], **extra: Any) -> Path:
    cfg = {
        "base": str(base),
        "out": str(root / "pool"),
        "experts": [{"name": name, "data": str(path)} for name, path in data.items()],
        "epochs": 3,
        "learning_rate": 1e-3,
        "save_steps": 4,
        **extra,
    }
    path = root / "pool.yaml"
    path.write_text(yaml.safe_dump(cfg))
    return path


def test_every_problem_is_named_before_anything_is_written(tmp_path: Path, tiny_base: Path) -> None:
    good = _datasets(tmp_path)
    bad_json = _write_jsonl(tmp_path / "bad.jsonl", [{"prompt": "a", "completion": "b"}, "{not json"])
    no_answer = _write_jsonl(tmp_path / "noanswer.jsonl", [{"messages": [{"role": "user", "content": "hi"}]}])
    data = {"agree": good["agree"], "x y": good["add"], "broken": bad_json, "asks": no_answer}
    path = _pool_yaml(tmp_path, tmp_path / "missing-base", data)
    cfg = yaml.safe_load(path.read_text())
    cfg["experts"].append({"name": "agree", "data": str(tmp_path / "absent.jsonl")})
    path.write_text(yaml.safe_dump(cfg))
    with pytest.raises(ConfigError) as err:
        load_pool_config(path)
    message = str(err.value)
    for expected in (
        "base=", "path does not exist", "experts[1].name='x y'", f"{bad_json}:2", f"{no_answer}:1",
        "ending with an assistant turn", "experts[4].name='agree': two experts",
        str(tmp_path / "absent.jsonl"),
    ):  # fmt: skip
        assert expected in message
    assert not (tmp_path / "pool").exists()


def test_unknown_keys_and_tiny_base_are_refused(tmp_path: Path, tiny_base: Path) -> None:
    path = _pool_yaml(tmp_path, tiny_base, _datasets(tmp_path))
    with pytest.raises(ConfigError, match=r"unknown key\(s\) 'rank'.*; valid keys: .*lora_rank"):
        load_pool_config(path, ["rank=4"])
    with pytest.raises(ConfigError, match="build-pool trains on a real base"):
        load_pool_config(path, ["base=tiny"])
    assert load_pool_config(path, ["lora_rank=4"]).lora_rank == 4
    assert [e.name for e in load_pool_config(path, ["experts.1.name=plus"]).experts] == ["agree", "plus"]
    with pytest.raises(ConfigError, match="did you mean 'lora_alpha'"):
        load_pool_config(path, ["lora_alfa=4"])


def test_examples_become_prompt_completion_conversations(tmp_path: Path) -> None:
    rows = read_examples(_datasets(tmp_path)["add"])
    assert rows[0] == {
        "prompt": [{"role": "user", "content": "What is 0 + 1?"}],
        "completion": [{"role": "assistant", "content": "1"}],
    }


@pytest.mark.slow
def test_build_pool_trains_distinct_experts_that_a_run_accepts(
    tmp_path: Path, tiny_base: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    import torch
    from peft import PeftModel
    from safetensors.torch import load_file
    from transformers import AutoModelForCausalLM

    from sparta_hpc.cli import main
    from sparta_hpc.config import check_paths, load_config

    path = _pool_yaml(tmp_path, tiny_base, _datasets(tmp_path))
    with pytest.raises(SystemExit) as done:
        main(["build-pool", str(path)])
    assert done.value.code == 0
    pool = tmp_path / "pool"
    models = yaml.safe_load((pool / "pool.yaml").read_text())["models"]
    assert [m["name"] for m in models] == ["agree", "add"]
    assert not (pool / ".work").exists()
    weights = [load_file(pool / name / "adapter_model.safetensors") for name in ("agree", "add")]
    assert weights[0].keys() == weights[1].keys()
    assert any(not weights[0][k].equal(weights[1][k]) for k in weights[0])
    for name in ("agree", "add"):
        losses = [
            r["loss"] for r in map(json.loads, (pool / name / "sft_metrics.jsonl").open()) if "loss" in r
        ]
        assert len(losses) == 9 and losses[-1] < losses[0]
    model = PeftModel.from_pretrained(AutoModelForCausalLM.from_pretrained(tiny_base), pool / "add")
    assert model(input_ids=torch.tensor([[1, 2, 3]])).logits.shape[-1] == model.config.vocab_size
    # The pool's models list is a valid run config: bases and adapters pass the run's own checks.
    run_cfg = tmp_path / "run.yaml"
    run_cfg.write_text(yaml.safe_dump({"models": models + [{"name": "plain", "base": str(tiny_base)}]}))
    check_paths(load_config(run_cfg, ["plan.k=2"]))
    # Running the command again keeps the finished experts as they are.
    stamps = [(pool / n / "adapter_model.safetensors").stat().st_mtime_ns for n in ("agree", "add")]
    with pytest.raises(SystemExit):
        main(["build-pool", str(path)])
    assert stamps == [(pool / n / "adapter_model.safetensors").stat().st_mtime_ns for n in ("agree", "add")]
    assert "agree:" in capsys.readouterr().out


@pytest.mark.slow
def test_an_interrupted_expert_resumes_to_the_same_weights(tmp_path: Path, tiny_base: Path) -> None:
    from safetensors.torch import load_file

    data = _datasets(tmp_path)["add"]
    cfg = PoolConfig(
        base=str(tiny_base), out=str(tmp_path), experts=[ExpertConfig(name="add", data=str(data))]
    )
    cfg.epochs, cfg.learning_rate, cfg.save_steps = 3, 1e-3, 3  # 9 steps: checkpoints 6 and 9 kept
    whole = train_expert(cfg, str(tiny_base), cfg.experts[0], tmp_path / "whole", tmp_path / "work-whole")
    assert sorted((tmp_path / "work-whole").glob("checkpoint-*")) == [
        tmp_path / "work-whole" / f"checkpoint-{step}" for step in (6, 9)
    ]
    for step in (6, 9):
        shutil.copytree(tmp_path / f"work-whole/checkpoint-{step}", tmp_path / f"work-cut/checkpoint-{step}")
    (tmp_path / "work-cut" / "checkpoint-9" / "trainer_state.json").unlink()  # killed while saving
    resumed = train_expert(cfg, str(tiny_base), cfg.experts[0], tmp_path / "cut", tmp_path / "work-cut")
    a, b = load_file(whole / "adapter_model.safetensors"), load_file(resumed / "adapter_model.safetensors")
    assert a.keys() == b.keys() and all(a[k].equal(b[k]) for k in a)
    assert json.loads((resumed / "sft_run.json").read_text()) == {
        "examples": 12, "steps": 9, "resumed_from": "checkpoint-6",
    }  # fmt: skip
    assert json.loads((whole / "sft_run.json").read_text())["resumed_from"] is None


@pytest.mark.slow
def test_build_pool_on_the_real_smollm2_gguf(
    tmp_path: Path, smollm2: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The pool's base is the GGUF file itself (resolved to the tests' converted folder, no new conversion);
    the expert's data goes through SmolLM2's own chat template, and the adapter generates on the base."""
    import torch
    from peft import PeftModel
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from sparta_hpc.engines.sources import CACHE_ENV
    from tests.conftest import MODEL_CACHE, SMOLLM2_GGUF

    monkeypatch.setenv(CACHE_ENV, str(MODEL_CACHE))
    rows = [
        {"prompt": f"What is code word {i}?", "completion": "The code word is pineapple."} for i in range(4)
    ]
    data = _write_jsonl(tmp_path / "code.jsonl", rows)
    path = _pool_yaml(
        tmp_path, SMOLLM2_GGUF, {"code": data}, epochs=2, batch_size=2, max_length=64, learning_rate=2e-3,
        lora_targets=["q_proj", "v_proj"],
    )  # fmt: skip
    cfg = load_pool_config(path)
    from sparta_hpc.jobs.pool import build_expert

    adapter = Path(build_expert(cfg, 0))
    rows_logged = [json.loads(line) for line in (adapter / "sft_metrics.jsonl").open()]
    losses = [row["loss"] for row in rows_logged if "loss" in row]
    assert len(losses) == 4 and losses[-1] < losses[0]
    tokenizer = AutoTokenizer.from_pretrained(smollm2)
    model = PeftModel.from_pretrained(AutoModelForCausalLM.from_pretrained(smollm2), adapter)
    chat = [{"role": "user", "content": "What is code word 7?"}]
    ids = tokenizer.apply_chat_template(
        chat, add_generation_prompt=True, return_tensors="pt", return_dict=True
    )
    with torch.no_grad():
        out = model.generate(**ids, max_new_tokens=8, do_sample=False)
    assert tokenizer.decode(out[0, ids["input_ids"].shape[1] :], skip_special_tokens=True).strip()
