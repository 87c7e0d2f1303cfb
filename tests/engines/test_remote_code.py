"""A model whose repository brings its own Python code loads only when its config entry trusts it."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from sparta_hpc.config import load_config
from sparta_hpc.engines.base import ModelSpec, Request, Sampling
from sparta_hpc.engines.hf import HFEngine
from sparta_hpc.jobs.common import player_specs, trusted_bases

pytestmark = pytest.mark.slow

CONFIG_CODE = """
from transformers import LlamaConfig


class CustomLlamaConfig(LlamaConfig):
    model_type = "custom-llama"
"""
MODEL_CODE = """
from transformers import LlamaForCausalLM

from .configuration_custom import CustomLlamaConfig


class CustomLlamaForCausalLM(LlamaForCausalLM):
    config_class = CustomLlamaConfig
"""


@pytest.fixture(scope="module")
def remote_code_base(tiny_base: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The tiny base as a repository that only its own code (``auto_map``) can load."""
    base = tmp_path_factory.mktemp("remote") / "custom-base"
    shutil.copytree(tiny_base, base)
    (base / "configuration_custom.py").write_text(CONFIG_CODE)
    (base / "modeling_custom.py").write_text(MODEL_CODE)
    config = json.loads((base / "config.json").read_text())
    config["model_type"] = "custom-llama"
    config["architectures"] = ["CustomLlamaForCausalLM"]
    config["auto_map"] = {
        "AutoConfig": "configuration_custom.CustomLlamaConfig",
        "AutoModelForCausalLM": "modeling_custom.CustomLlamaForCausalLM",
    }
    (base / "config.json").write_text(json.dumps(config))
    return base


def test_remote_code_is_refused_unless_the_model_entry_trusts_it(remote_code_base: Path) -> None:
    with pytest.raises(ValueError, match="trust_remote_code"):
        HFEngine([ModelSpec(name="custom", base=str(remote_code_base))])
    trusted = HFEngine([ModelSpec(name="custom", base=str(remote_code_base), trust_remote_code=True)])
    out = trusted.generate(
        [Request(request_id="r", model="custom", prompt="Hi", seed=0)], Sampling(max_new_tokens=4)
    )
    assert out[0].num_new_tokens > 0
    trusted.close()


def test_only_the_bases_of_trusting_entries_are_trusted() -> None:
    cfg = load_config(None)
    cfg.models[0].base, cfg.models[0].trust_remote_code = "/m/a", True
    cfg.models[1].base = "/m/b"
    players = {m.name: {"base": m.base, "adapter": None} for m in cfg.models}
    specs = {s.name: s.trust_remote_code for s in player_specs(players, trusted_bases(cfg))}
    assert specs[cfg.models[0].name] is True and specs[cfg.models[1].name] is False
