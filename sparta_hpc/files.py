"""Atomic file writes, JSON and JSONL records with ``path:line`` errors, and checksums. A leaf: it imports
nothing from sparta_hpc but the errors."""

from __future__ import annotations

import hashlib
import json
import os
import tempfile
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import IO, Any

from sparta_hpc.errors import RecordError, SpartaError

BOM = b"\xef\xbb\xbf"


@contextmanager
def _temporary_sibling(path: Path, suffix: str = ".tmp") -> Iterator[Path]:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, name = tempfile.mkstemp(prefix=f".{path.name}.", suffix=suffix, dir=path.parent)
    os.close(fd)
    tmp = Path(name)
    try:
        yield tmp
    finally:
        tmp.unlink(missing_ok=True)


def atomic_write_text(path: Path, text: str) -> None:
    """Write to a temp file, fsync, rename: readers see the old file or the whole new one."""
    with _temporary_sibling(path) as tmp:
        with open(tmp, "w", encoding="utf-8") as f:
            f.write(text)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    _fsync_dir(path.parent)


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
    f: IO[bytes], path: Path, error: type[SpartaError], max_bytes: int | None = None
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


def read_jsonl(path: Path) -> list[dict[str, Any]]:
    """All records of a JSONL file; a bad line raises RecordError naming ``path:line``."""
    return [record for _, record in _numbered_records(path)]


def _numbered_records(path: Path) -> list[tuple[int, dict[str, Any]]]:
    """``(line number, record)`` of every non-blank line."""
    records = []
    with open(path, "rb") as f:
        for lineno, line in text_lines(f, path, RecordError):
            if not line.strip():
                continue
            try:
                record = json.loads(line)
            except json.JSONDecodeError as e:
                raise RecordError(f"{path}:{lineno}: not valid JSON: {e.msg}") from None
            if not isinstance(record, dict):
                raise RecordError(f"{path}:{lineno}: a record must be a JSON object")
            records.append((lineno, record))
    return records


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


def atomic_replace_dir(tmp: Path, final: Path) -> None:
    """Move a fully written directory into place (replacing an older one)."""
    if final.exists():
        old = final.with_name(f".{final.name}.old")
        if old.exists():
            _rmtree(old)
        os.replace(final, old)
        os.replace(tmp, final)
        _rmtree(old)
    else:
        final.parent.mkdir(parents=True, exist_ok=True)
        os.replace(tmp, final)
    _fsync_dir(final.parent)


def _rmtree(path: Path) -> None:
    import shutil

    shutil.rmtree(path, ignore_errors=True)
