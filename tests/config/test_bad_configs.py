"""Bad configs, as a table: each is refused through the real entry path (``launcher.start`` and ``cli.main``)
before any work, by a ``SpartaError`` whose message names the key (or ``file:line``), and an existing run
directory is left exactly as it was: the same files, bytes and mtimes.

Model directories here are fakes holding only what the checks read (``config.json``, ``adapter_config.json``,
a safetensors header with zero weights): the checks never load weights. ``test_real_tiny_adapter_...`` (slow)
runs them on a real tiny base and adapter.
"""

from __future__ import annotations

import json
import math
import struct
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import yaml

from sparta_hpc import cli
from sparta_hpc.config import check_paths, load_config
from sparta_hpc.errors import ConfigChanged, ConfigError, RecordError, SpartaError, StateError, TaskDataError
from sparta_hpc.run import iteration, launcher
from tests.bad_inputs import copy_run_dir, make_run_dir, no_work, snapshot

__all__ = ["no_work"]

A = "$ASSETS"
"""Placeholder of the assets folder (fake models and data) in case texts."""

GOOD: dict[str, Any] = {
    "run": {"name": "bad-inputs", "iterations": 1},
    "models": [{"name": n, "base": "tiny", "adapter": "tiny"} for n in "abcd"],
    "task": {"name": "synthetic", "synthetic_size": 8, "synthetic_eval_size": 4},
    "plan": {"num_prompts": 4, "k": 2},
    "cluster": {"backend": "inline"},
}
"""The config of the existing run directory; every case is it with one thing wrong."""

TINY_SHAPES = {
    "hidden_size": 128,
    "intermediate_size": 256,
    "num_attention_heads": 4,
    "num_key_value_heads": 2,
}


def merged(update: dict[str, Any]) -> dict[str, Any]:
    out = {k: dict(v) if isinstance(v, dict) else v for k, v in GOOD.items()}
    for key, value in update.items():
        both = isinstance(value, dict) and isinstance(out.get(key), dict)
        out[key] = {**out[key], **value} if both else value
    return out


def players(*specs: tuple[str, str | None]) -> dict[str, Any]:
    """``models`` of four players; ``specs`` replace the first ones as ``(base, adapter)``."""
    models = [{"name": n, "base": "tiny", "adapter": "tiny"} for n in "abcd"]
    for m, (base, adapter) in zip(models, specs, strict=False):
        m.update(base=base, adapter=adapter)
    return {"models": models}


@dataclass(frozen=True)
class Case:
    """One bad input: a config file (a dict merged into GOOD, or the whole text) and overrides; the error it
    must raise and the fragments its message must hold (the key, the file and line)."""

    id: str
    names: tuple[str, ...]
    config: dict[str, Any] | str | bytes | None = None
    overrides: tuple[str, ...] = ()
    preset: str | None = None
    error: type[SpartaError] = ConfigError
    damage: Callable[[Path], None] | None = None
    """Changes the (copied) existing run directory before the launch, for run-directory cases."""
    detach: bool = False
    """Launch with ``--detach``."""

    def text(self) -> bytes:
        if isinstance(self.config, bytes):
            return self.config
        if isinstance(self.config, str):
            return self.config.encode()
        return yaml.safe_dump(merged(self.config or {}), sort_keys=False).encode()


def _write(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)


CONFIG_FILE = "$CONFIG"
"""Placeholder of the case's config file path in expected fragments."""


def _drop_state_keys(path: Path, *keys: str) -> None:
    state = json.loads(path.read_text())
    path.write_text(json.dumps({k: v for k, v in state.items() if k not in keys}))


def file_case(id: str, config: dict[str, Any] | str | bytes, *names: str, **kw: Any) -> Case:
    """A config file with one thing wrong (a dict is merged into GOOD, text is the whole file)."""
    return Case(id, names, config, **kw)


def cli_case(id: str, overrides: str | tuple[str, ...], *names: str, **kw: Any) -> Case:
    """GOOD with overrides on the command line."""
    return Case(id, names, overrides=(overrides,) if isinstance(overrides, str) else overrides, **kw)


M = GOOD["models"]
F = CONFIG_FILE
CASES = [
    # ---- types and shapes
    file_case("str-for-int", {"run": {"iterations": "many"}}, "run.iterations", "many"),
    cli_case("bool-for-int", "plan.num_prompts=true", "plan.num_prompts", "bool"),
    cli_case("float-for-int", "run.iterations=1.5", "run.iterations", "float"),
    file_case("scalar-for-section", {"run": 5}, f"{F}: run must be a section", "got 5"),
    file_case("models-a-mapping", {"models": {"name": "a", "base": "tiny"}}, f"{F}: models must be a list"),
    file_case("model-a-string", {"models": ["x", *M[1:]]}, "models[0] must be a mapping", "got 'x'"),
    cli_case("models-index-past-end", "models.9.name=x", "models.9.name=x: models has 4 entries"),
    cli_case("models-index-typo", "models[0].bse=x", "unknown key 'models[0].bse' (did you mean 'base'?)"),
    cli_case("models-index-bad-base", f"models.1.base={A}/absent", f"models[1].base='{A}/absent' (b)"),
    # ---- unknown keys
    file_case("unknown-section", {"plann": {"k": 1}}, f"{F}: unknown key 'plann'", "valid keys: run.name"),
    file_case(
        "unknown-key",
        {"plan": {"alfa": 1}},
        "unknown key 'plan.alfa' (did you mean 'plan.alpha'?)",
        "valid keys: plan.num_prompts",
    ),
    file_case(
        "unknown-model-key",
        {"models": [{"name": "a", "base": "tiny", "adaptor": "tiny"}, *M[1:]]},
        "unknown key 'models[0].adaptor' (did you mean 'adapter'?)",
        "valid keys of a model: name, base, adapter",
    ),
    file_case(
        "misspelt-resource-keys-at-once",
        {"cluster": {"backend": "inline", "train": {"gpus": 2}}},
        f"{F}: cluster.train.gpus",
        "command line: cluster.generate.gpu",
        "Valid keys of a stage",
        overrides=("cluster.generate.gpu=1",),
    ),
    # ---- models
    file_case("model-without-name", {"models": [M[0], {"base": "tiny"}, *M[2:]]}, "missing models[1].name"),
    cli_case("model-without-base", "models=[{name: a}, {name: b}, {name: c}]", "missing models[0].base"),
    cli_case(
        "duplicate-names",
        "models=[{name: a, base: tiny}, {name: a, base: tiny}, {name: c, base: tiny}]",
        "duplicate model names ['a']",
    ),
    file_case("two-players", {"models": M[:2], "plan": {"k": 1}}, "models: 2 given", "at least 3"),
    cli_case("k-above-opponents", "plan.k=4", "plan.k=4 but only 3 opponents exist"),
    # ---- enums
    file_case("engine-kind", {"engine": {"kind": "tpu"}}, "engine.kind='tpu'", "allowed values: hf, vllm"),
    cli_case("judge-method", "judge.method=vote", "judge.method='vote'", "allowed values: generate, logprob"),
    file_case("run-profile", {"run": {"profile": "mine"}}, "run.profile='mine'", "paper, released"),
    cli_case("run-profile-a-list", "run.profile=[paper]", "run.profile=", "allowed values: paper, released"),
    file_case(
        "cluster-backend", {"cluster": {"backend": "k8s"}}, "cluster.backend='k8s'", "inline, local, slurm"
    ),
    cli_case(
        "task-name", "task.name=gsm9k", "task.name='gsm9k' is not a built-in task (did you mean 'gsm8k'?)"
    ),
    cli_case("eval-split", "eval.splits=[train]", "eval.splits has ['train']", "val, test"),
    # ---- counts
    file_case("negative-prompts", {"plan": {"num_prompts": -1}}, "plan.num_prompts=-1 must be >= 1"),
    cli_case("zero-shards", "generate.num_shards=0", "generate.num_shards=0 must be >= 1"),
    cli_case("zero-iterations", "run.iterations=0", "run.iterations=0 must be >= 1"),
    cli_case("zero-lora-rank", "tiny.lora_rank=0", "tiny.lora_rank=0 must be >= 1"),
    cli_case("zero-synthetic-pool", "task.synthetic_size=0", "task.synthetic_size=0 must be >= 1"),
    cli_case("zero-nodes", "cluster.train.nodes=0", "cluster.train.nodes=0 must be >= 1"),
    cli_case("ranks-vs-resources", "train.num_ranks=2", "train.num_ranks=2 needs", "now inline, 1 x 1"),
    # ---- model paths (no weights are read)
    file_case(
        "missing-base",
        players((f"{A}/absent", None)),
        f"models[0].base='{A}/absent' (a): path does not exist",
    ),
    file_case(
        "missing-adapter",
        players(("tiny", "tiny"), (f"{A}/base", f"{A}/absent")),
        f"models[1].adapter='{A}/absent' (b): path does not exist",
    ),
    file_case("base-without-config", players((f"{A}/no-config", None)), "models[0].base=", "no config.json"),
    file_case(
        "base-a-file", players((f"{A}/weights.safetensors", None)), "models[0].base=", "not a directory"
    ),
    file_case(
        "base-config-broken",
        players((f"{A}/broken-config", None)),
        "models[0].base=",
        f"{A}/broken-config/config.json:2: not valid JSON",
    ),
    file_case(
        "adapter-not-lora",
        players((f"{A}/base", f"{A}/not-adapter")),
        "models[0].adapter=",
        "not a LoRA adapter: no adapter_config.json",
    ),
    file_case(
        "adapter-other-peft-type",
        players((f"{A}/base", f"{A}/prefix")),
        "models[0].adapter=",
        "peft_type='PREFIX_TUNING'",
    ),
    file_case(
        "adapter-of-another-base",
        players(("tiny", "tiny"), ("tiny", None), (f"{A}/base", f"{A}/adapter-other")),
        "models[2].adapter=",
        "made for another base (/models/other-base)",
        "[8, 64] (64 inputs), but the base has hidden_size=128",
    ),
    file_case(
        "adapter-with-more-layers",
        players((f"{A}/base", f"{A}/adapter-deep")),
        "models[0].adapter=",
        "layers.2.self_attn.q_proj.lora_A.weight is in layer 2, but the base has num_hidden_layers=2",
    ),
    file_case(
        "every-bad-path-at-once",
        {
            **players(
                (f"{A}/absent", None), (f"{A}/base", f"{A}/not-adapter"), (f"{A}/base", f"{A}/adapter-other")
            ),
            "task": {"name": "gsm8k", "data_dir": f"{A}/no-data"},
            "train": {"deepspeed": f"{A}/absent.json"},
        },
        "5 bad paths: models[0].base=",
        "; models[1].adapter=",
        "; models[2].adapter=",
        "; task.data_dir=",
        "; train.deepspeed=",
    ),
    # ---- task data paths (bad contents: tests/tasks/test_bad_data.py)
    cli_case("task-without-data-dir", "task.name=gsm8k", "task.data_dir is required for task.name='gsm8k'"),
    file_case(
        "missing-split-files",
        {"task": {"name": "gsm8k", "data_dir": f"{A}/data"}},
        "2 bad paths",
        f"{A}/data/gsm8k/val.jsonl does not exist",
        f"{A}/data/gsm8k/test.jsonl does not exist",
    ),
    # ---- tasks of your own (docs/formats.md, "Your own tasks")
    cli_case(
        "own-task-no-metric", "task.name=mytask", "task.name='mytask' is not a built-in task", "task.metric"
    ),
    cli_case(
        "own-task-metric", ("task.name=mytask", "task.metric=accuracy"), "task.metric='accuracy' is not valid"
    ),
    cli_case(
        "own-task-template",
        ("task.name=mytask", "task.metric=exact", "task.template=Answer this"),
        "task.template: prompt template 'Answer this' has no {prompt} placeholder",
    ),
    cli_case(
        "own-task-pattern",
        ("task.name=mytask", "task.metric=exact", "task.answer_pattern='Answer: ('"),
        "task.answer_pattern='Answer: (': not a valid regular expression",
    ),
    cli_case("metric-of-builtin", "task.metric=f1", "task.metric is for a task of your own"),
    cli_case(
        "own-task-no-data-dir",
        ("task.name=mytask", "task.metric=exact"),
        "task.data_dir is required for task",
    ),
    cli_case(
        "own-task-judge-without-judge",
        ("task.name=mytask", "task.metric=judge", f"task.data_dir={A}/data"),
        "task.metric=judge is scored by an LLM judge: set eval.judge_model",
    ),
    file_case(
        "own-task-metadata-field",
        {
            "task": {
                "name": "mytask",
                "metric": "exact",
                "data_dir": f"{A}/data",
                "template": "Topic {metadata.topic}: {prompt}",
            }
        },
        f"{A}/data/mytask/train.jsonl: task.template: mytask/train/1: the template uses {{metadata.topic}}",
        error=TaskDataError,
    ),
    cli_case(
        "own-task-choice-without-choices",
        ("task.name=mytask", "task.metric=choice", f"task.data_dir={A}/data"),
        f"{A}/data/mytask/val.jsonl: mytask/val/0: no choices; task.metric=choice",
        error=TaskDataError,
    ),
    cli_case(
        "rubric-file-missing", f"judge.rubric_file={A}/absent.txt", f"judge.rubric_file='{A}/absent.txt'"
    ),
    cli_case(
        "rubric-file-placeholder",
        f"judge.rubric_file={A}/rubric-bad.txt",
        f"judge.rubric_file='{A}/rubric-bad.txt': the judge prompt has no {{response}} placeholder",
    ),
    # ---- the file itself, the command line
    file_case("not-yaml", "run:\n  seed: [1, 2\nplan:\n  k: 2\n", f"{F}:3: not valid YAML", "at line 2"),
    file_case("yaml-tab", "run:\n\tname: x\n", f"{F}:2: not valid YAML"),
    file_case(
        "yaml-duplicate-key", "run: {}\nplan: {}\nrun: {}\n", f"{F}:3: not valid YAML", "duplicate key run"
    ),
    file_case("yaml-top-list", "- run\n- plan\n", f"{F}:1: the top level must be a mapping", "not a list"),
    file_case("yaml-top-scalar", "hello\n", f"{F}:1: the top level must be a mapping", "not a single value"),
    file_case("yaml-not-utf8", b"run:\n  name: caf\xe9\n", f"{F}:2: not valid UTF-8 (byte 0xe9)"),
    cli_case("override-without-equals", "plan.k", "override 'plan.k' must look like key=value"),
    cli_case("override-without-key", "=3", "override '=3' must look like key=value"),
    cli_case("override-value-not-yaml", "eval.splits=[val", "command line: eval.splits=[val: not valid YAML"),
    Case("missing-preset", ("cluster preset 'nosuch' not found", "available: a100x16"), preset="nosuch"),
    cli_case("two-presets", "cluster=a100x16", "two cluster presets given", preset="local-slurm"),
    Case("detach-without-slurm", ("--detach submits the launcher to Slurm",), detach=True),
    # ---- the existing run directory (checked before the launcher takes its lock)
    cli_case(
        "changed-config",
        "plan.alpha=0.3",
        "was started with another config",
        "plan.alpha",
        error=ConfigChanged,
    ),
    Case(
        "corrupt-state",
        ("run/state.json:1: not valid JSON",),
        error=RecordError,
        damage=lambda run: (run / "state.json").write_text('{"schema_version": '),
    ),
    Case(
        "state-a-list",
        ("run/state.json: expected a JSON object, got list",),
        error=StateError,
        damage=lambda run: (run / "state.json").write_text("[]\n"),
    ),
    Case(
        "state-without-keys",
        ("run/state.json: missing keys ['iteration', 'stages']",),
        error=StateError,
        damage=lambda run: _drop_state_keys(run / "state.json", "iteration", "stages"),
    ),
    Case(
        "corrupt-saved-config",
        ("run/config.yaml:2: not valid YAML", "at line 1"),
        damage=lambda run: (run / "config.yaml").write_text("run: {name: [x\n"),
    ),
]


def _safetensors(path: Path, shapes: dict[str, list[int]]) -> None:
    """A safetensors file with these F32 tensors (zero weights)."""
    header: dict[str, Any] = {"__metadata__": {"format": "pt"}}
    offset = 0
    for name, shape in shapes.items():
        size = 4 * math.prod(shape)
        header[name] = {"dtype": "F32", "shape": shape, "data_offsets": [offset, offset + size]}
        offset += size
    blob = json.dumps(header).encode()
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(struct.pack("<Q", len(blob)) + blob + bytes(offset))


def _adapter(path: Path, hidden: int, kv: int, layers: int, made_for: str, peft_type: str = "LORA") -> None:
    config = {
        "peft_type": peft_type,
        "r": 8,
        "base_model_name_or_path": made_for,
        "target_modules": ["q_proj"],
    }
    _write(path / "adapter_config.json", json.dumps(config))
    shapes: dict[str, list[int]] = {}
    for i in range(layers):
        for module, out in (("q_proj", hidden), ("k_proj", kv), ("v_proj", kv), ("o_proj", hidden)):
            prefix = f"base_model.model.model.layers.{i}.self_attn.{module}"
            shapes |= {f"{prefix}.lora_A.weight": [8, hidden], f"{prefix}.lora_B.weight": [out, 8]}
    _safetensors(path / "adapter_model.safetensors", shapes)


@pytest.fixture(scope="module")
def assets(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Fake model folders (only what the checks read) and a task data folder with a train split only."""
    root = tmp_path_factory.mktemp("assets")
    base = {**TINY_SHAPES, "model_type": "llama", "head_dim": 32, "num_hidden_layers": 2, "vocab_size": 1000}
    _write(root / "base" / "config.json", json.dumps(base))
    _adapter(root / "adapter", 128, 64, 2, str(root / "base"))
    _adapter(root / "adapter-other", 64, 32, 2, "/models/other-base")
    _adapter(root / "adapter-deep", 128, 64, 4, str(root / "base"))
    _adapter(root / "prefix", 128, 64, 2, str(root / "base"), peft_type="PREFIX_TUNING")
    _write(root / "not-adapter" / "README.md", "a folder, not an adapter\n")
    _safetensors(root / "no-config" / "model.safetensors", {"w": [2, 2]})
    _safetensors(root / "weights.safetensors", {"w": [2, 2]})
    _write(root / "broken-config" / "config.json", '{\n  "hidden_size": 128,,\n}\n')
    _write(root / "data" / "gsm8k" / "train.jsonl", json.dumps({"id": "g/0", "prompt": "1 + 1?"}) + "\n")
    for split in ("train", "val", "test"):
        rows = [
            {
                "id": f"mytask/{split}/0",
                "prompt": "Capital of France?",
                "answer": "Paris",
                "metadata": {"topic": "geo"},
            },
            {"id": f"mytask/{split}/1", "prompt": "2 + 2?", "answer": "4"},
        ]
        _write(root / "data" / "mytask" / f"{split}.jsonl", "".join(json.dumps(r) + "\n" for r in rows))
    _write(root / "rubric-bad.txt", 'Grade this answer to {question} as {"score": N}.\n')
    return root


@pytest.fixture(scope="module")
def existing_run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A run directory opened with GOOD (config.yaml, state.json, launcher.lock)."""
    root = tmp_path_factory.mktemp("existing")
    _write(root / "good.yaml", yaml.safe_dump(GOOD))
    return make_run_dir(root / "good.yaml", root / "run")


def _launch_args(case: Case, assets: Path, tmp_path: Path) -> tuple[Path, list[str]]:
    config = tmp_path / "case.yaml"
    config.write_bytes(case.text().replace(A.encode(), str(assets).encode()))
    return config, [o.replace(A, str(assets)) for o in case.overrides]


def _expected(case: Case, assets: Path, config: Path) -> list[str]:
    return [n.replace(A, str(assets)).replace(CONFIG_FILE, str(config)) for n in case.names]


def test_the_table_is_large_enough() -> None:
    assert len(CASES) >= 20 and len({c.id for c in CASES}) == len(CASES)


@pytest.mark.parametrize("case", CASES, ids=lambda c: c.id)
def test_bad_config_is_refused_before_any_work(
    case: Case, assets: Path, existing_run: Path, tmp_path: Path, no_work: list[str]
) -> None:
    run = copy_run_dir(existing_run, tmp_path / "run")
    if case.damage is not None:
        case.damage(run)
    before = snapshot(run)
    config, overrides = _launch_args(case, assets, tmp_path)
    spec = launcher.LaunchSpec(
        config=str(config),
        overrides=tuple(overrides),
        preset=case.preset,
        run_dir=str(run),
        detach=case.detach,
    )
    with pytest.raises(SpartaError) as info:
        launcher.start(spec, log=lambda s: None)
    message = str(info.value)
    assert type(info.value) is case.error, message
    assert "\n" not in message
    for fragment in _expected(case, assets, config):
        assert fragment in message
    assert no_work == [] and snapshot(run) == before


CLI_CASES = [
    c
    for c in CASES
    if c.id in {"str-for-int", "every-bad-path-at-once", "not-yaml", "missing-preset", "detach-without-slurm"}
]
CLI_CASES += [c for c in CASES if c.error is not ConfigError]


@pytest.mark.parametrize("case", CLI_CASES, ids=lambda c: c.id)
def test_the_cli_prints_the_refusal_as_one_line(
    case: Case,
    assets: Path,
    existing_run: Path,
    tmp_path: Path,
    no_work: list[str],
    capsys: pytest.CaptureFixture[str],
) -> None:
    """Config errors exit 2, other SpartaErrors 1; one line, no traceback, the run directory untouched."""
    run = copy_run_dir(existing_run, tmp_path / "run")
    if case.damage is not None:
        case.damage(run)
    before = snapshot(run)
    config, overrides = _launch_args(case, assets, tmp_path)
    preset = ["--cluster-preset", case.preset] if case.preset else []
    preset += ["--detach"] if case.detach else []
    with pytest.raises(SystemExit) as exit_info:
        cli.main(["run", "--config", str(config), "--run-dir", str(run), *preset, *overrides])
    err = capsys.readouterr().err
    assert exit_info.value.code == (2 if case.error is ConfigError else 1)
    assert err.count("\n") == 1 and "Traceback" not in err
    assert all(fragment in err for fragment in _expected(case, assets, config))
    assert no_work == [] and snapshot(run) == before


def test_the_good_config_gets_through(
    assets: Path, existing_run: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The control: GOOD (and real-looking model folders) reach the run, so the table tests the checks."""
    started = []
    monkeypatch.setattr(iteration, "run", lambda cfg, run_dir, **kw: started.append(cfg) or _Done())
    before = snapshot(existing_run)
    assert (
        launcher.start(
            launcher.LaunchSpec(config=str(existing_run.parent / "good.yaml"), run_dir=str(existing_run)),
            log=lambda s: None,
        )
        == 0
    )
    assert len(started) == 1 and snapshot(existing_run) == before
    real = f"{{name: a, base: {assets}/base, adapter: {assets}/adapter}}"
    check_paths(
        load_config(
            overrides=[f"models=[{real}, {{name: b, base: tiny}}, {{name: c, base: tiny}}]", "plan.k=2"]
        )
    )


class _Done:
    iteration = 1
    iterations_total = 1


@pytest.mark.slow
def test_real_tiny_adapter_fits_its_base_and_no_other(
    tiny_base: Path, tiny_adapters: list[Path], assets: Path
) -> None:
    def paths(base: Path) -> list[str]:
        models = ", ".join(f"{{name: p{i}, base: {base}, adapter: {a}}}" for i, a in enumerate(tiny_adapters))
        return [f"models=[{models}, {{name: j, base: tiny}}]", "plan.k=2"]

    check_paths(load_config(overrides=paths(tiny_base)))
    other = assets / "other-base"
    _write(
        other / "config.json",
        json.dumps({**json.loads((tiny_base / "config.json").read_text()), "hidden_size": 96}),
    )
    with pytest.raises(ConfigError, match=r"2 bad paths: models\[0\]\.adapter=.*made for another base"):
        check_paths(load_config(overrides=paths(other)))
