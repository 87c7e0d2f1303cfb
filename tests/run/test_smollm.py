"""The whole loop on a real model: configs/smollm.yaml (SmolLM2-135M-Instruct from its GGUF file, base-only
players) shrunk to one iteration of 3 prompts, inline. The plan job resolves the GGUF to the converted
folder in the model cache; every stage then runs the real model: answers are words, judges write scores,
DPO trains each player a LoRA and evaluation grades real answers."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from sparta_hpc.files import read_jsonl
from sparta_hpc.store.rundir import RunDir
from tests.conftest import MODEL_CACHE, SMOLLM2_GGUF

ROOT = Path(__file__).resolve().parents[2]
pytestmark = [pytest.mark.slow, pytest.mark.timeout(1800)]


def test_smollm_tournament_runs_end_to_end_on_the_real_model(smollm2: Path, tmp_path: Path) -> None:
    run_dir = tmp_path / "run"
    models = ", ".join(f"{{name: p{i}, base: {SMOLLM2_GGUF}, adapter: null}}" for i in range(3))
    overrides = [
        f"models=[{models}]", "run.iterations=1", "plan.num_prompts=3", "plan.k=2", "judge.method=logprob",
        "generate.max_new_tokens=12", "train.max_length=96", "train.learning_rate=1e-4",
        "task.synthetic_eval_size=1", "eval.max_new_tokens=6",
    ]  # fmt: skip
    env = {
        **os.environ,
        "HF_HUB_OFFLINE": "1",
        "TOKENIZERS_PARALLELISM": "false",
        "SPARTA_MODEL_CACHE": str(MODEL_CACHE),
    }
    done = subprocess.run(
        [sys.executable, "launch.py", "--config", "configs/smollm.yaml", "--cluster", "inline",
         "--run-dir", str(run_dir), *overrides],
        cwd=ROOT, env=env, capture_output=True, text=True, timeout=1700,
    )  # fmt: skip
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    run = RunDir(run_dir)
    players = json.loads(run.players(0).read_text())
    assert {p["base"] for p in players.values()} == {str(smollm2)}  # the cached conversion, not the GGUF
    assert all(p["adapter"] is None for p in players.values())
    answers = [r for f in sorted(run.stage(0, "generate").glob("shard_*.jsonl")) for r in read_jsonl(f)]
    assert len(answers) == 6 and all(r["num_tokens"] > 0 for r in answers)
    words = " ".join(r["response"] for r in answers).split()
    # words, not the noise of a random model
    assert sum(w.strip(".,:!?").isalpha() for w in words) > len(words) // 5
    judged = [r for f in sorted(run.stage(0, "judge").glob("shard_*.jsonl")) for r in read_jsonl(f)]
    scores = [s for r in judged for s in r["scores"]]
    assert len(judged) == 3 and all(1 <= s <= 10 for s in scores)  # one judge per match (3 players)
    for name in players:
        assert (run.adapter(0, name) / "adapter_model.safetensors").is_file()
    state = json.loads((run_dir / "state.json").read_text())
    assert state["iteration"] == 1
    ratings = [r["rating"] for r in state["ratings"].values()]
    assert len(ratings) == 3 and max(ratings) > min(ratings)
    evaluated = [r for f in run.stage(0, "evaluate").rglob("*.jsonl") for r in read_jsonl(f)]
    assert evaluated and all(r["num_tokens"] > 0 for r in evaluated)
    assert any(r["score"] is not None for r in evaluated)
