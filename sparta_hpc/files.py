"""Atomic file writes, JSON and JSONL records with ``path:line`` errors, and checksums. A leaf: it imports
nothing from sparta_hpc but the errors."""

from __future__ import annotations

import errno
import hashlib
import json
import os
import shutil
import tempfile
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

from sparta_hpc.errors import RecordError, RunDirUnwritable

BOM = b"\xef\xbb\xbf"

_UMASK = os.umask(0o022)
os.umask(_UMASK)
"""The process's umask at start: files written here get the mode a plain ``open`` would give them."""
FILE_MODE = 0o666 & ~_UMASK
DIR_MODE = 0o777 & ~_UMASK


@contextmanager
def _temporary_sibling(path: Path, suffix: str = ".tmp") -> Iterator[Path]:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, name = tempfile.mkstemp(prefix=f".{path.name}.", suffix=suffix, dir=path.parent)
    os.fchmod(fd, FILE_MODE)  # mkstemp makes 0600 whatever the umask: teammates could not read results
    os.close(fd)
    tmp = Path(name)
    try:
        yield tmp
    finally:
        tmp.unlink(missing_ok=True)


def _write_synced(path: Path, text: str) -> None:
    with open(path, "w", encoding="utf-8") as f:
        f.write(text)
        f.flush()
        os.fsync(f.fileno())


def atomic_write_text(path: Path, text: str) -> None:
    """Write to a temp file, fsync, rename: readers see the old file or the whole new one."""
    with _temporary_sibling(path) as tmp:
        _write_synced(tmp, text)
        os.replace(tmp, path)
    _fsync_dir(path.parent)


def publish_text(path: Path, text: str) -> bool:
    """Write ``text`` to ``path`` atomically unless ``path`` exists; True if this call published it.

    For outputs that two attempts at the same unit may both compute (a job and its orphan, or a resubmission
    of a job the launcher lost): the first to finish publishes, the other keeps that file (a published file is
    always whole) and writes nothing. A hard link is the atomic "create if absent".
    """
    with _temporary_sibling(path) as tmp:
        _write_synced(tmp, text)
        try:
            os.link(tmp, path)
        except FileExistsError:
            return False
        except OSError:  # a file system without hard links: a rename, racy only against a concurrent twin
            if path.exists():
                return False
            os.replace(tmp, path)
    _fsync_dir(path.parent)
    return True


def _fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def dump_json(obj: Any) -> str:
    return json.dumps(obj, ensure_ascii=False, sort_keys=True, indent=1) + "\n"


def write_json(path: Path, obj: Any) -> None:
    atomic_write_text(path, dump_json(obj))


def read_json(path: Path) -> Any:
    raw = path.read_bytes()
    try:
        return json.loads(raw.decode("utf-8"))
    except UnicodeDecodeError as e:
        line = raw[: e.start].count(b"\n") + 1
        raise RecordError(f"{path}:{line}: {_not_utf8(raw, e)}") from None
    except json.JSONDecodeError as e:
        raise RecordError(f"{path}:{e.lineno}: not valid JSON: {e.msg}") from None


def _not_utf8(raw: bytes, e: UnicodeDecodeError) -> str:
    line_start = raw.rfind(b"\n", 0, e.start) + 1
    return f"not valid UTF-8 (byte 0x{raw[e.start]:02x} at column {e.start - line_start + 1})"


def text_lines(
    f: IO[bytes], path: Path, error: Callable[[str], Exception] = RecordError, max_bytes: int | None = None
) -> Iterator[tuple[int, str]]:
    """``(line number, text)`` of each line of a binary file. A line that is not UTF-8, starts with a byte
    order mark or is longer than ``max_bytes`` (newline not counted) raises ``error`` naming ``path:line``;
    never holds more than one line (of at most ``max_bytes + 1`` bytes) in memory."""
    lineno = 0
    while True:
        raw = f.readline(-1 if max_bytes is None else max_bytes + 1)
        if not raw:
            return
        lineno += 1
        if max_bytes is not None and len(raw) > max_bytes and not raw.endswith(b"\n"):
            raise error(f"{path}:{lineno}: line longer than {max_bytes} bytes (the limit of one record)")
        if lineno == 1 and raw.startswith(BOM):
            raise error(f"{path}:1: starts with a UTF-8 byte order mark (BOM); save the file without it")
        try:
            yield lineno, raw.decode("utf-8")
        except UnicodeDecodeError as e:
            raise error(f"{path}:{lineno}: {_not_utf8(raw, e)}") from None


def jsonl_text(records: Iterable[dict[str, Any]]) -> str:
    return "".join(json.dumps(r, ensure_ascii=False, sort_keys=True) + "\n" for r in records)


def write_jsonl(path: Path, records: Iterable[dict[str, Any]]) -> None:
    atomic_write_text(path, jsonl_text(records))


@dataclass(frozen=True)
class BadLine:
    """A JSONL line that is not valid JSON, as ``jsonl_lines(keep_bad=True)`` gives it."""

    error: str
    """``not valid JSON: <why>``."""


def jsonl_lines(
    path: Path,
    *,
    lines: Iterable[str] | None = None,
    keep_bad: bool = False,
    error: Callable[[str], Exception] = RecordError,
    max_bytes: int | None = None,
) -> Iterator[tuple[int, Any]]:
    """``(line number, decoded JSON value)`` of every non-blank line of a JSONL file, in file order.

    A line that is not valid JSON raises ``error("path:line: not valid JSON: <why>")``, or with ``keep_bad``
    comes as ``(line, BadLine)``. ``lines``: the file's lines where the caller has opened or read it already
    (default: ``path`` read through ``text_lines``: UTF-8, no BOM, lines of at most ``max_bytes``). The one
    JSONL reader: every other one builds on it.
    """
    if lines is None:
        with open(path, "rb") as f:
            decoded = (text for _, text in text_lines(f, path, error, max_bytes))
            yield from jsonl_lines(path, lines=decoded, keep_bad=keep_bad, error=error)
        return
    for lineno, line in enumerate(lines, start=1):
        if not line.strip():
            continue
        try:
            value = json.loads(line)
        except json.JSONDecodeError as e:
            if not keep_bad:
                raise error(f"{path}:{lineno}: not valid JSON: {e.msg}") from None
            value = BadLine(f"not valid JSON: {e.msg}")
        except RecursionError:
            raise error(f"{path}:{lineno}: JSON nested too deeply") from None
        yield lineno, value


def read_jsonl(path: Path) -> list[dict[str, Any]]:
    """All records of a JSONL file; a bad line raises RecordError naming ``path:line``."""
    return [record for _, record in _numbered_records(path)]


def _numbered_records(path: Path) -> list[tuple[int, dict[str, Any]]]:
    """``(line number, record)`` of every non-blank line; each must be a JSON object."""
    records = []
    for lineno, record in jsonl_lines(path):
        if not isinstance(record, dict):
            raise RecordError(f"{path}:{lineno}: a record must be a JSON object")
        records.append((lineno, record))
    return records


def whole_json(path: Path) -> bool:
    """Whether ``path`` holds a whole JSON object: one written in place (not atomically) and cut off by a kill
    or a full disk does not."""
    try:
        return isinstance(json.loads(path.read_bytes()), dict)
    except (OSError, ValueError):  # missing, cut off, not UTF-8
        return False


def parse_records(path: Path, parse: Any) -> list[Any]:
    """``read_jsonl`` then ``parse(dict)`` per line, with ``path:line`` on any error."""
    out = []
    for lineno, record in _numbered_records(path):
        try:
            out.append(parse(record))
        except (KeyError, TypeError, ValueError) as e:
            raise RecordError(f"{path}:{lineno}: {e}") from None
    return out


def sha256_file(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def sha256_path(path: Path) -> str | None:
    """Checksum of a file, or of a directory's files (names and contents); None if missing."""
    if path.is_file():
        return sha256_file(path)
    if not path.is_dir():
        return None
    h = hashlib.sha256()
    for f in sorted(p for p in path.rglob("*") if p.is_file()):
        h.update(str(f.relative_to(path)).encode() + b"\0" + sha256_file(f).encode())
    return h.hexdigest()


def canonical_adapter_config(folder: Path, base_name: str | None = None) -> None:
    """Sort the lists of a PEFT ``adapter_config.json`` (``target_modules`` is saved from a set, in an order
    that changes from process to process), so that the same adapter always has the same bytes and checksum;
    ``base_name``: the base as the run's records name it (relative inside the run directory), recorded as
    ``base_model_name_or_path`` instead of the path the base was loaded from."""
    path = folder / "adapter_config.json"
    config = json.loads(path.read_text(encoding="utf-8"))
    if base_name is not None:
        config["base_model_name_or_path"] = base_name
    for key, value in config.items():
        if isinstance(value, list) and all(isinstance(v, str) for v in value):
            config[key] = sorted(value)
    path.write_text(json.dumps(config, indent=2, sort_keys=True), encoding="utf-8")


def require_safetensors_adapter(path: str) -> str:
    """``path`` if it is a LoRA adapter saved as safetensors; pickled weights (``adapter_model.bin``) are
    refused, since loading a pickle can run any code."""
    if not (Path(path) / "adapter_model.safetensors").is_file():
        raise ValueError(
            f"adapter {path} has no adapter_model.safetensors: sparta-hpc loads safetensors weights only "
            "(convert a .bin one: PeftModel.from_pretrained(...).save_pretrained(safe_serialization=True))"
        )
    return path


def remove_temporaries(folder: Path) -> list[Path]:
    """Remove the temporary files and folders that writers killed mid-write left under ``folder`` (the
    names ``_temporary_sibling`` and ``staging_dir`` give); call it when no writer can still be at work there.
    Returns what was removed."""
    found = [*folder.rglob(".*.tmp"), *folder.rglob(".*.tmp-*")] if folder.is_dir() else []
    for path in found:
        if path.is_dir():
            shutil.rmtree(path, ignore_errors=True)
        else:
            path.unlink(missing_ok=True)
    return found


@contextmanager
def staging_dir(out: Path) -> Iterator[Path]:
    """A fresh temporary sibling directory of ``out`` (mode from the umask) to write a directory into; when
    the block ends without an error it is renamed to ``out`` in one step, else removed. If another process
    published ``out`` first (a concurrent build), its directory is kept and ours discarded. Everything in it
    gets its mode from the umask before the rename: safetensors writes its files 0600 whatever the umask."""
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{out.name}.tmp-", dir=out.parent))
    try:
        tmp.chmod(DIR_MODE)
        yield tmp
        for path in tmp.rglob("*"):
            if not path.is_symlink():
                path.chmod(
                    DIR_MODE if path.is_dir() else FILE_MODE | (path.stat().st_mode & 0o111 & DIR_MODE)
                )
        try:
            os.rename(tmp, out)
        except OSError:
            if not out.is_dir():
                raise
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


_REFUSALS = {
    errno.ENOSPC: ("No space left on device", "os error 28"),
    errno.EDQUOT: ("Disk quota exceeded", "os error 122"),
    errno.EROFS: ("Read-only file system", "os error 30"),
}
"""The write failures a run directory's file system causes, with how libraries that raise no ``OSError``
(tokenizers, safetensors: ``... (os error 28)``) word them."""


def refused_write(exc: BaseException | None) -> int | None:
    """``ENOSPC``, ``EDQUOT`` or ``EROFS`` when ``exc`` (or an exception it was raised from) is a write the
    file system refused for that reason; None for any other failure."""
    seen: set[int] = set()
    while exc is not None and id(exc) not in seen:
        seen.add(id(exc))
        if isinstance(exc, OSError) and exc.errno in _REFUSALS:
            return exc.errno
        for code, phrases in _REFUSALS.items():
            if any(phrase in str(exc) for phrase in phrases):
                return code
        exc = exc.__cause__ or exc.__context__
    return None


def nearly_full(path: Path) -> bool:
    """Whether the file system of ``path`` has less than 1% (at most 1 GiB) of its space free: what a job
    that died writing there, unable to write even its error, leaves behind."""
    try:
        usage = shutil.disk_usage(path)
    except OSError:
        return False
    return usage.free < min(2**30, usage.total // 100)


def unwritable(path: Path, code: int, detail: str = "") -> RunDirUnwritable:
    """The error for a run directory whose file system refused a write with ``code`` (see ``refused_write``):
    names the path, the cause and what to do."""
    name = errno.errorcode.get(code, str(code))
    if code in (errno.ENOSPC, errno.EDQUOT):
        try:
            free = f"{shutil.disk_usage(path).free / 2**20:.1f} MiB free"
        except OSError:
            free = "free space unknown"
        what = "no space left on device" if code == errno.ENOSPC else "disk quota exceeded"
        cause = f"{what} ({name}; {free})"
        todo = "free some space, then run the same command again: the run resumes where it stopped"
    elif code == errno.EROFS:
        cause = f"read-only file system ({name})"
        todo = "remount it read-write, then run the same command again"
    else:
        cause = f"{os.strerror(code).lower()} ({name})"
        todo = "make it writable, then run the same command again"
    return RunDirUnwritable(f"cannot write to {path}: {cause}{f': {detail}' if detail else ''}; {todo}")
