#!/usr/bin/env bash
# The fast tier for the development loop (about 1-2 minutes on 2 cores): lint, formatting, types, the import
# contract and every test not marked slow, slurm or vllm. Needs .venv (scripts/setup.sh); installs nothing
# else, starts no service. Extra arguments go to pytest. The whole suite is scripts/test.sh.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
export HF_HUB_OFFLINE=1 TOKENIZERS_PARALLELISM=false
.venv/bin/ruff check .
.venv/bin/ruff format --check .
.venv/bin/mypy
.venv/bin/python -m pytest -q -p no:cacheprovider tests/test_layout.py
.venv/bin/python -m pytest -q -p no:cacheprovider -m "not slow and not slurm and not vllm" "$@"
