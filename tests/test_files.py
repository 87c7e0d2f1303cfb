"""Files that sparta-hpc writes follow the umask, so a group can read a run when the umask allows it."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

WRITE = """
import os
import sys
from pathlib import Path
from sparta_hpc.files import publish_text, staging_dir, write_json
root = Path(sys.argv[1])
write_json(root / "state.json", {})
publish_text(root / "shard.jsonl", "{}\\n")
with staging_dir(root / "adapter") as tmp:
    (tmp / "adapter_config.json").write_text("{}")
    fd = os.open(tmp / "adapter_model.safetensors", os.O_CREAT | os.O_WRONLY, 0o600)  # as safetensors does
    os.close(fd)
"""


@pytest.mark.parametrize(("umask", "file_mode", "dir_mode"), [(0o022, 0o644, 0o755), (0o027, 0o640, 0o750)])
def test_written_files_follow_the_umask(tmp_path: Path, umask: int, file_mode: int, dir_mode: int) -> None:
    proc = subprocess.run(
        [sys.executable, "-c", WRITE, str(tmp_path)], preexec_fn=lambda: os.umask(umask), capture_output=True
    )
    assert proc.returncode == 0, proc.stderr
    modes = {p.name: p.stat().st_mode & 0o777 for p in tmp_path.iterdir()}
    assert modes == {"state.json": file_mode, "shard.jsonl": file_mode, "adapter": dir_mode}
    inside = {p.name: p.stat().st_mode & 0o777 for p in (tmp_path / "adapter").iterdir()}
    assert inside == {"adapter_config.json": file_mode, "adapter_model.safetensors": file_mode}
