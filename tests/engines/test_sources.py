"""Model sources without loading a model: the four kinds of base, hub ids from a local Hugging Face cache
built by hand (no hub is reachable here, and jobs never reach one), GGUF conversion published once, every bad
model reported at once before anything runs, and the ``models`` command."""

from __future__ import annotations

import shutil
import threading
from pathlib import Path

import pytest

from sparta_hpc.config import check_paths, load_config
from sparta_hpc.engines import sources
from sparta_hpc.engines.sources import (
    ModelSourceError,
    convert_gguf,
    converted_dir,
    resolve_base,
    source_kind,
    source_problems,
)
from sparta_hpc.errors import ConfigError

REV = "0123456789abcdef0123456789abcdef01234567"


@pytest.fixture
def hub_cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """An empty Hugging Face hub cache that ``snapshot_download`` reads (HF_HUB_CACHE)."""
    import huggingface_hub.constants

    cache = tmp_path / "hub"
    cache.mkdir()
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_CACHE", str(cache))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    return cache


def cache_model(hub_cache: Path, repo_id: str, model_dir: Path) -> Path:
    """Lay ``model_dir`` out as the hub cache does: blobs behind snapshots/<rev>/ links, refs/main = rev."""
    repo = hub_cache / f"models--{repo_id.replace('/', '--')}"
    snapshot = repo / "snapshots" / REV
    snapshot.mkdir(parents=True)
    (repo / "blobs").mkdir()
    for f in model_dir.iterdir():
        blob = repo / "blobs" / f"blob-{f.name}"
        shutil.copy(f, blob)
        (snapshot / f.name).symlink_to(Path("../../blobs") / blob.name)
    (repo / "refs").mkdir()
    (repo / "refs" / "main").write_text(REV)
    return snapshot


@pytest.fixture
def fake_model(tmp_path: Path) -> Path:
    model = tmp_path / "fake-model"
    model.mkdir()
    (model / "config.json").write_text('{"model_type": "llama", "hidden_size": 8}')
    (model / "model.safetensors").write_bytes(b"weights")
    return model


def test_a_base_is_tiny_a_gguf_file_a_hub_id_or_a_directory(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.chdir(tmp_path)
    assert source_kind("tiny") == "tiny"
    assert source_kind("models/SmolLM2.Q4_1.GGUF") == "gguf"
    assert source_kind("Qwen/Qwen2.5-0.5B-Instruct") == "hub"
    assert source_kind("/abs/path/model") == "dir"
    assert source_kind("./org/name") == "dir"
    assert source_kind("a/b/c") == "dir"
    (tmp_path / "org" / "name").mkdir(parents=True)
    assert source_kind("org/name") == "dir"  # an existing local path wins over the hub id


def test_hub_id_resolves_from_the_local_cache_only(hub_cache: Path, fake_model: Path) -> None:
    with pytest.raises(ModelSourceError, match=r"not in the local Hugging Face cache.*models fetch"):
        resolve_base("org/model")
    snapshot = cache_model(hub_cache, "org/model", fake_model)
    assert resolve_base("org/model") == str(snapshot)
    assert (Path(resolve_base("org/model")) / "config.json").read_text() == (
        fake_model / "config.json"
    ).read_text()
    assert source_problems("org/model") == []


def test_a_cached_hub_snapshot_without_config_is_reported(hub_cache: Path, fake_model: Path) -> None:
    (fake_model / "config.json").unlink()
    cache_model(hub_cache, "org/broken", fake_model)
    snapshot = hub_cache / "models--org--broken" / "snapshots" / REV
    assert source_problems("org/broken") == [
        f"cached snapshot {snapshot}: not a model directory: no config.json"
    ]


def test_gguf_problems_name_the_reason(tmp_path: Path) -> None:
    not_gguf = tmp_path / "weights.gguf"
    not_gguf.write_bytes(b"PK\x03\x04 a zip")
    assert source_problems(str(not_gguf)) == ["not a GGUF file (it does not start with 'GGUF')"]
    assert source_problems(str(tmp_path / "missing.gguf")) == ["path does not exist"]
    (tmp_path / "dir.gguf").mkdir()
    assert source_problems(str(tmp_path / "dir.gguf")) == ["not a file (a GGUF model is one .gguf file)"]


def test_gguf_is_converted_once_and_published_in_one_rename(tmp_path: Path, monkeypatch) -> None:
    gguf = tmp_path / "m.gguf"
    gguf.write_bytes(b"GGUF" + b"\0" * 64)
    calls: list[Path] = []
    started, release = threading.Event(), threading.Event()

    def fake_dequantize(path: Path, out: Path) -> None:
        calls.append(out)
        started.set()
        release.wait(10)
        (out / "config.json").write_text("{}")
        (out / "model.safetensors").write_bytes(b"w")

    monkeypatch.setattr(sources, "_dequantize", fake_dequantize)
    cache = tmp_path / "cache"
    results: list[Path] = []
    threads = [threading.Thread(target=lambda: results.append(convert_gguf(gguf, cache))) for _ in range(2)]
    for t in threads:
        t.start()
    started.wait(10)
    release.set()
    for t in threads:
        t.join()
    out = converted_dir(gguf, cache)
    assert results == [out, out] and len(calls) == 2  # two converters at once: one result is published
    assert sorted(p.name for p in cache.iterdir()) == [out.name]  # nothing half-written left behind
    assert sorted(p.name for p in out.iterdir()) == ["config.json", "model.safetensors", sources.SOURCE_FILE]
    assert convert_gguf(gguf, cache) == out and len(calls) == 2  # cached: never converted again
    copy = tmp_path / "elsewhere" / "copy.gguf"
    copy.parent.mkdir()
    copy.write_bytes(gguf.read_bytes())
    assert converted_dir(copy, cache).name.split("-")[-1] == out.name.split("-")[-1]  # named by content


def test_every_bad_model_is_reported_at_once(hub_cache: Path, tmp_path: Path, fake_model: Path) -> None:
    bad_gguf = tmp_path / "bad.gguf"
    bad_gguf.write_text("not gguf")
    cache_model(hub_cache, "org/good", fake_model)
    models = [
        f"{{name: a, base: {tmp_path}/nowhere}}",
        "{name: b, base: org/not-fetched}",
        f"{{name: c, base: {bad_gguf}}}",
        f"{{name: d, base: {tmp_path}/missing.gguf, adapter: {tmp_path}/no-adapter}}",
        "{name: e, base: org/good, adapter: null}",
    ]
    cfg = load_config(overrides=[f"models=[{', '.join(models)}]", "plan.k=2"])
    with pytest.raises(ConfigError) as e:
        check_paths(cfg)
    msg = str(e.value)
    assert msg.startswith("5 bad paths: ")
    for needle in (
        f"models[0].base='{tmp_path}/nowhere' (a): path does not exist",
        "models[1].base='org/not-fetched' (b): is not in the local Hugging Face cache",
        f"models[2].base='{bad_gguf}' (c): not a GGUF file",
        f"models[3].base='{tmp_path}/missing.gguf' (d): path does not exist",
        f"models[3].adapter='{tmp_path}/no-adapter' (d): path does not exist",
    ):
        assert needle in msg
    assert "(e)" not in msg


def test_models_check_and_fetch_commands(hub_cache: Path, tmp_path: Path, fake_model: Path, capsys) -> None:
    from sparta_hpc.cli import main

    config = tmp_path / "c.yaml"
    config.write_text(
        "models:\n"
        "  - {name: a, base: org/m}\n  - {name: b, base: org/m}\n  - {name: c, base: tiny, adapter: tiny}\n"
        "plan: {k: 2}\n"
    )
    with pytest.raises(SystemExit) as e:
        main(["models", "check", "--config", str(config)])
    assert e.value.code == 2
    assert "org/m" in capsys.readouterr().err
    snapshot = cache_model(hub_cache, "org/m", fake_model)
    with pytest.raises(SystemExit) as e:
        main(["models", "fetch", "--config", str(config)])  # HF_HUB_OFFLINE: finds what is cached
    out = capsys.readouterr().out
    assert e.value.code == 0
    assert f"org/m: hub id, in the cache at {snapshot}" in out
    assert f"a: hub org/m -> {snapshot}; adapter: none (the bare base)" in out
    assert "models ok: 3 models" in out
