"""The built-in tiny models: complete, cached, deterministic, readable by the logprob judge."""

from __future__ import annotations

from pathlib import Path

import pytest

from sparta_hpc.engines.tiny import ADAPTER_FILES, BASE_FILES, build_tiny_adapter, build_tiny_base


def _weights(path: Path) -> dict:
    from safetensors.torch import load_file

    return load_file(path)


def test_existing_incomplete_dir_is_refused(tmp_path: Path) -> None:
    out = tmp_path / "base"
    out.mkdir()
    (out / "junk.txt").write_text("not a model")
    with pytest.raises(FileExistsError, match="not a complete build"):
        build_tiny_base(out)


@pytest.mark.slow
def test_base_is_complete_and_cached(tiny_base: Path) -> None:
    assert all((tiny_base / name).is_file() for name in BASE_FILES)
    stamp = (tiny_base / "model.safetensors").stat().st_mtime_ns
    assert build_tiny_base(tiny_base, seed=123) == tiny_base
    assert (tiny_base / "model.safetensors").stat().st_mtime_ns == stamp
    assert not list(tiny_base.parent.glob(".base.tmp-*"))


@pytest.mark.slow
def test_tokenizer_and_config(tiny_base: Path) -> None:
    from transformers import AutoConfig, AutoTokenizer

    from sparta_hpc.engines.hf import score_tokens

    tokenizer = AutoTokenizer.from_pretrained(tiny_base)
    assert 900 <= len(tokenizer) <= 1000
    assert tokenizer.padding_side == "left"
    assert None not in (tokenizer.bos_token, tokenizer.eos_token, tokenizer.pad_token, tokenizer.unk_token)
    tokens = score_tokens(tokenizer)
    assert tokens.ten is not None  # "10" is one token
    assert tokenizer.convert_ids_to_tokens([*tokens.digits, tokens.ten]) == [str(n) for n in range(1, 11)]
    text = tokenizer.apply_chat_template(
        [{"role": "user", "content": "Hi"}], tokenize=False, add_generation_prompt=True
    )
    assert text == "<s><|user|>\nHi\n<|assistant|>\n"
    config = AutoConfig.from_pretrained(tiny_base)
    assert (config.hidden_size, config.num_hidden_layers, config.head_dim) == (128, 2, 32)
    assert config.vocab_size == len(tokenizer)


@pytest.mark.slow
def test_base_is_deterministic_from_seed(tiny_base: Path, tmp_path: Path) -> None:
    same = build_tiny_base(tmp_path / "same", seed=0)
    other = build_tiny_base(tmp_path / "other", seed=1)
    assert (same / "tokenizer.json").read_bytes() == (tiny_base / "tokenizer.json").read_bytes()
    reference, again, changed = (_weights(p / "model.safetensors") for p in (tiny_base, same, other))
    assert all(reference[k].equal(again[k]) for k in reference)
    assert not reference["model.embed_tokens.weight"].equal(changed["model.embed_tokens.weight"])


@pytest.mark.slow
def test_adapter_holds_only_random_lora_weights(
    tiny_base: Path, tiny_adapters: list[Path], tmp_path: Path
) -> None:
    first, second = tiny_adapters
    assert sorted(p.name for p in first.iterdir()) == sorted(ADAPTER_FILES)
    weights = _weights(first / "adapter_model.safetensors")
    assert len(weights) == 2 * 4 * 2  # A and B, four projections, two layers
    assert all("lora_" in key for key in weights)
    assert all(tensor.abs().sum() > 0 for tensor in weights.values())  # B too, unlike PEFT's init
    again = _weights(build_tiny_adapter(tiny_base, tmp_path / "again", seed=1) / "adapter_model.safetensors")
    assert all(weights[k].equal(again[k]) for k in weights)
    other = _weights(second / "adapter_model.safetensors")
    assert not any(weights[k].equal(other[k]) for k in weights)
