"""Where a model's weights come from: a model's ``base`` is one of four sources.

- ``tiny``: the built-in random tiny base, built inside the run directory (``engines/tiny.py``).
- a local Hugging Face directory (``config.json`` + safetensors weights + tokenizer).
- a hub id (``org/name``, not an existing path): read from the local Hugging Face cache only
  (``HF_HUB_CACHE`` / ``HF_HOME``); ``sparta-hpc models fetch --config CONFIG`` fills that cache on a
  machine with internet (a login node), so jobs never reach the hub.
- a GGUF file (``*.gguf``): de-quantized once to float32 into a safetensors directory under the model cache
  (``$SPARTA_MODEL_CACHE``, default ``~/.cache/sparta-hpc/models``), named by the file's sha256, published in
  one rename (``files.staging_dir``): two jobs converting at once keep one result.

``resolve_base(base)`` turns any of them into a directory transformers and vLLM load (``tiny`` stays
``tiny``); ``source_problems(base)`` says cheaply (no weights loaded) why a base cannot be used.
"""

from __future__ import annotations

import hashlib
import importlib.util
import json
import os
import re
from pathlib import Path

from sparta_hpc.engines.base import TINY, base_problems
from sparta_hpc.errors import SpartaError
from sparta_hpc.files import FILE_MODE, staging_dir

CACHE_ENV = "SPARTA_MODEL_CACHE"
"""Environment variable naming the folder of converted GGUF models (on a cluster: a shared file system)."""
HUB_ID = re.compile(r"^[A-Za-z0-9][\w.-]*/[A-Za-z0-9][\w.-]*$")
"""A Hugging Face hub id, ``org/name`` (a base that matches it but exists as a local path is that path)."""
HUB_IGNORE = ("*.bin", "*.pth", "*.pt", "*.h5", "*.msgpack", "*.onnx", "*.onnx_data", "*.gguf", "original/*")
"""Files of a hub repository ``models fetch`` does not download (weights in formats the jobs never load)."""
GGUF_MAGIC = b"GGUF"
SOURCE_FILE = "sparta-source.json"
"""Written into a converted directory: the GGUF file it came from and that file's sha256."""


class ModelSourceError(SpartaError):
    """A model base that cannot be resolved to a model directory."""


def source_kind(base: str) -> str:
    """``tiny``, ``gguf`` (a path ending in ``.gguf``), ``hub`` (``org/name`` that is no local path) or
    ``dir``."""
    if base == TINY:
        return "tiny"
    if base.lower().endswith(".gguf"):
        return "gguf"
    if HUB_ID.match(base) and not os.path.lexists(base):
        return "hub"
    return "dir"


def cache_root() -> Path:
    """The folder of converted GGUF models: ``$SPARTA_MODEL_CACHE``, else ``$XDG_CACHE_HOME/sparta-hpc/
    models``, else ``~/.cache/sparta-hpc/models``."""
    if os.environ.get(CACHE_ENV):
        return Path(os.environ[CACHE_ENV]).expanduser()
    xdg = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(xdg) / "sparta-hpc" / "models"


_DIGESTS: dict[tuple[str, int, int], str] = {}


def file_sha256(path: Path) -> str:
    """The sha256 of a file, computed once per process for a given path, size and mtime."""
    st = path.stat()
    key = (str(path.resolve()), st.st_size, st.st_mtime_ns)
    if key not in _DIGESTS:
        h = hashlib.sha256()
        with path.open("rb") as f:
            for block in iter(lambda: f.read(1 << 22), b""):
                h.update(block)
        _DIGESTS[key] = h.hexdigest()
    return _DIGESTS[key]


def converted_dir(gguf: str | Path, cache: str | Path | None = None) -> Path:
    """Where the safetensors conversion of a GGUF file lives: named by the file's stem and content hash, so
    the same file reached by two paths (or copied to another machine) is converted once."""
    path = Path(gguf)
    root = Path(cache) if cache is not None else cache_root()
    return root / f"{path.stem}-{file_sha256(path)[:16]}"


def hub_snapshot(repo_id: str, *, download: bool = False) -> Path:
    """The local snapshot folder of a hub model (its ``refs/main`` revision). ``download=False`` reads the
    local cache only (what jobs and checks do); ``download=True`` fetches what is missing (login node)."""
    from huggingface_hub import snapshot_download

    try:
        return Path(
            snapshot_download(repo_id, local_files_only=not download, ignore_patterns=list(HUB_IGNORE))
        )
    except Exception as e:  # LocalEntryNotFoundError, network, authentication, repository not found
        from huggingface_hub.constants import HF_HUB_CACHE

        if download:
            raise ModelSourceError(f"{repo_id}: download failed: {_first_line(e)}") from None
        raise ModelSourceError(
            f"hub id {repo_id!r} is not in the local Hugging Face cache ({HF_HUB_CACHE}); "
            "run `sparta-hpc models fetch --config CONFIG` where the hub is reachable (a login node), "
            "with the same HF_HOME / HF_HUB_CACHE as the jobs"
        ) from None


def convert_gguf(gguf: str | Path, cache: str | Path | None = None) -> Path:
    """The safetensors directory of a GGUF model, converting it (once) if the cache does not hold it."""
    path = Path(gguf)
    if path.is_file() and (converted_dir(path, cache) / SOURCE_FILE).is_file():
        return converted_dir(path, cache)  # converted before: no gguf package needed (e.g. .venv-vllm)
    problems = gguf_problems(path)
    if problems:
        raise ModelSourceError(f"{gguf}: {problems[0]}")
    out = converted_dir(path, cache)
    with staging_dir(out) as tmp:
        _dequantize(path, tmp)
        (tmp / SOURCE_FILE).write_text(
            json.dumps({"gguf": path.name, "sha256": file_sha256(path)}, indent=1) + "\n", encoding="utf-8"
        )
    return out


def _dequantize(path: Path, out: Path) -> None:
    """Load the GGUF through transformers (de-quantized to float32) and save a plain safetensors model with
    its tokenizer, chat template and generation config. transformers refuses to save a model it loaded from
    GGUF, so the weights are copied into a model built from the same config without quantization."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(path.parent, gguf_file=path.name)
    loaded = AutoModelForCausalLM.from_pretrained(path.parent, gguf_file=path.name, dtype=torch.float32)
    config = loaded.config
    if hasattr(config, "quantization_config"):
        del config.quantization_config
    model = AutoModelForCausalLM.from_config(config, dtype=torch.float32)
    model.load_state_dict(loaded.state_dict())
    model.generation_config = loaded.generation_config
    model.save_pretrained(out)
    tokenizer.save_pretrained(out)
    for f in out.iterdir():  # safetensors writes 0600: others sharing the cache could not read it
        f.chmod(FILE_MODE)


def resolve_base(base: str, cache: str | Path | None = None) -> str:
    """A directory transformers and vLLM can load for ``base`` (``tiny`` stays ``tiny``): a local directory
    as given, a hub id's snapshot in the local cache, a GGUF file's cached conversion (made now if missing).
    Raises ModelSourceError with the reason when it cannot."""
    kind = source_kind(base)
    if kind == "hub":
        return str(hub_snapshot(base))
    if kind == "gguf":
        return str(convert_gguf(base, cache))
    return base


def checked_dir(base: str) -> str | None:
    """The model directory of ``base`` if it exists already (never downloads or converts); None when it does
    not (yet), e.g. a GGUF file not converted so far. Lets checks read a base's ``config.json``."""
    kind = source_kind(base)
    if kind == "tiny":
        return TINY
    try:
        if kind == "hub":
            return str(hub_snapshot(base))
        if kind == "gguf":
            out = converted_dir(base)
            return str(out) if (out / SOURCE_FILE).is_file() else None
    except (ModelSourceError, OSError):
        return None
    return base


def gguf_problems(path: Path) -> list[str]:
    """Why ``path`` is not a GGUF model transformers can convert here."""
    if not path.exists():
        return ["path does not exist"]
    if not path.is_file():
        return ["not a file (a GGUF model is one .gguf file)"]
    try:
        with path.open("rb") as f:
            magic = f.read(4)
    except OSError as e:
        return [f"cannot read: {e.strerror or e}"]
    if magic != GGUF_MAGIC:
        return ["not a GGUF file (it does not start with 'GGUF')"]
    if importlib.util.find_spec("gguf") is None:
        return ["reading a GGUF file needs the gguf package (pip install gguf==0.19.0)"]
    return []


def source_problems(base: str) -> list[str]:
    """Why ``base`` cannot be used as a model base; cheap (reads headers and ``config.json`` only)."""
    kind = source_kind(base)
    if kind == "gguf":
        return gguf_problems(Path(base))
    if kind == "hub":
        try:
            snapshot = hub_snapshot(base)
        except ModelSourceError as e:
            return [str(e).removeprefix(f"hub id {base!r} ")]
        return [f"cached snapshot {snapshot}: {p}" for p in base_problems(str(snapshot))]
    return base_problems(base)


def _first_line(e: BaseException) -> str:
    return str(e).splitlines()[0] if str(e) else type(e).__name__
