#!/usr/bin/env bash
# The tiny CPU demo: 4 tiny players, 3 iterations, on local subprocesses. Extra arguments go to launch.py.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
export HF_HUB_OFFLINE=1 TOKENIZERS_PARALLELISM=false
exec .venv/bin/python launch.py --cluster local "$@"
