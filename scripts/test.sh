#!/usr/bin/env bash
# The whole test suite. Installs what it needs; as root on a machine without Slurm it also installs and starts
# the single-node test cluster (slurm/testcluster.sh). Extra arguments go to pytest.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
export HF_HUB_OFFLINE=1 TOKENIZERS_PARALLELISM=false
if ! sinfo -h >/dev/null 2>&1 && [[ $(id -u) == 0 ]] && command -v apt-get >/dev/null; then
  bash slurm/testcluster.sh install
  bash slurm/testcluster.sh start
fi
.venv/bin/ruff check .
.venv/bin/ruff format --check .
exec .venv/bin/python -m pytest -q -p no:cacheprovider "$@"
