"""A finished demo run copied elsewhere (the original removed) resumes, reports and exports from the copy; the
export loads in PEFT and generates, and its merged model generates the same tokens."""

from __future__ import annotations

import csv
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
MINI = ["plan.num_prompts=8", "generate.max_new_tokens=8", "train.max_length=64", "eval.max_new_tokens=8"]
ENV = {**os.environ, "HF_HUB_OFFLINE": "1", "TOKENIZERS_PARALLELISM": "false"}
PLAYERS = ["tiny-a", "tiny-b", "tiny-c", "tiny-d"]

pytestmark = pytest.mark.slow


def sh(*args: str, ok: bool = True) -> subprocess.CompletedProcess[str]:
    proc = subprocess.run(args, cwd=ROOT, env=ENV, capture_output=True, text=True, timeout=600)
    assert (proc.returncode == 0) == ok, proc.stdout[-3000:] + proc.stderr[-3000:]
    return proc


def launch(run_dir: Path, iterations: int) -> str:
    cmd = [sys.executable, str(ROOT / "launch.py"), "--cluster", "inline", "--run-dir", str(run_dir)]
    return sh(*cmd, f"run.iterations={iterations}", *MINI).stdout


@pytest.fixture(scope="module")
def copy(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A one-iteration demo run, copied to another folder; the original is removed."""
    original = tmp_path_factory.mktemp("original") / "run"
    launch(original, 1)
    copied = tmp_path_factory.mktemp("elsewhere") / "run"
    shutil.copytree(original, copied, symlinks=True)
    shutil.rmtree(original)
    return copied


def test_a_copied_run_names_nothing_of_the_original(copy: Path) -> None:
    players = json.loads((copy / "iter_000/plan/players.json").read_text())
    assert players["tiny-a"] == {"base": "models/tiny-base", "adapter": "models/initial/tiny-a"}
    assert (
        json.loads((copy / "state.json").read_text())["adapters"]["tiny-b"] == "iter_000/train/tiny-b/adapter"
    )
    config = json.loads((copy / "iter_000/train/tiny-c/adapter/adapter_config.json").read_text())
    assert config["base_model_name_or_path"] == "models/tiny-base"
    weights = copy / "iter_000/train/tiny-c/adapter/adapter_model.safetensors"
    assert weights.stat().st_mode & 0o044 == 0o044  # safetensors writes 0600: the umask (022) decides here


def test_the_copy_resumes_reports_and_exports(copy: Path, tmp_path: Path) -> None:
    import torch
    from peft import PeftModel
    from transformers import AutoModelForCausalLM, AutoTokenizer

    out = launch(copy, 2)  # one more iteration, from the copy's own adapters
    assert "[iter 1] train    done" in out and "[iter 0]" not in out
    trained = json.loads((copy / "iter_001/plan/players.json").read_text())
    assert trained["tiny-d"]["adapter"] == "iter_000/train/tiny-d/adapter"
    status = json.loads(sh(sys.executable, "-m", "sparta_hpc.cli", "status", str(copy), "--json").stdout)
    assert status["done"] is True and status["iteration"] == 2
    report = tmp_path / "report"
    sh(sys.executable, "-m", "sparta_hpc.cli", "report", str(copy), "--out", str(report))
    steps = list(csv.DictReader((report / "dpo_steps.csv").open()))  # DPO per step, both iterations
    assert {(r["iteration"], r["player"]) for r in steps} == {(t, p) for t in "01" for p in PLAYERS}
    assert all(r["loss"] and r["rewards/margins"] and r["rewards/accuracies"] for r in steps)
    assert "## DPO training" in (report / "report.md").read_text()
    rows = list(csv.DictReader((report / "results.csv").open()))
    chosen = rows[-1]
    t = int(chosen["iteration"].removeprefix("iter_"))
    assert chosen["adapter"] == f"iter_{t:03d}/train/{chosen['player']}/adapter"
    assert (copy / chosen["adapter"] / "adapter_model.safetensors").is_file()
    assert (rows[0]["kind"], rows[0]["adapter"]) == ("initial", "models/initial/tiny-a")

    exported = tmp_path / "export"
    cli = [sys.executable, "-m", "sparta_hpc.cli", "export", str(copy), "--out", str(exported)]
    sh(*cli, "--iteration", "last", "--merge")
    assert sorted(p.name for p in exported.iterdir()) == ["base", *PLAYERS]
    for player in PLAYERS:
        info = json.loads((exported / player / "sparta.json").read_text())
        assert (info["iteration"], info["adapter_in_run"]) == (1, f"iter_001/train/{player}/adapter")
        card = (exported / player / "README.md").read_text()
        assert "library_name: peft" in card and "**iter_1** (exported)" in card and "run:\n  name:" in card
    folder = exported / "tiny-b"
    config = json.loads((folder / "adapter_config.json").read_text())
    assert config["base_model_name_or_path"] == str(exported / "base")
    tokenizer = AutoTokenizer.from_pretrained(folder)
    base = AutoModelForCausalLM.from_pretrained(config["base_model_name_or_path"], dtype=torch.float32)
    model = PeftModel.from_pretrained(base, folder)
    prompt = tokenizer("What is 2 + 3?", return_tensors="pt")
    with torch.no_grad():
        tokens = model.generate(
            **prompt, max_new_tokens=6, do_sample=False, pad_token_id=tokenizer.pad_token_id
        )
        merged = AutoModelForCausalLM.from_pretrained(folder / "merged", dtype=torch.float32)
        again = merged.generate(
            **prompt, max_new_tokens=6, do_sample=False, pad_token_id=tokenizer.pad_token_id
        )
    assert tokens.shape[1] > prompt["input_ids"].shape[1]
    assert tokens.tolist() == again.tolist()  # the merged weights are the adapter's model
    bare = AutoModelForCausalLM.from_pretrained(exported / "base", dtype=torch.float32).state_dict()
    assert any(not torch.equal(bare[k], merged.state_dict()[k]) for k in bare)  # the adapter is merged in

    refused = sh(*cli, ok=False)  # the folders exist: nothing is overwritten
    assert "already exist" in refused.stderr and "Traceback" not in refused.stderr
    wrong = sh(*cli[:-1], str(tmp_path / "other"), "--iteration", "7", ok=False)
    assert "committed iterations 0..1" in wrong.stderr and not (tmp_path / "other").exists()
