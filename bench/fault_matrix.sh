#!/usr/bin/env bash
# The fault matrix (tests/run/test_faults.py): faults injected into tiny real runs, each of which must end
# identical to an uninterrupted run. Prints the matrix and writes it to bench/out/fault_matrix.md (or the
# file named by SPARTA_FAULT_MATRIX_OUT).
#
#   bash bench/fault_matrix.sh          the full matrix: every stage x several kill points x inline and local
#                                       jobs, every killed-job, corruption, disk-full and Slurm case (about an
#                                       hour on 2 CPU cores; root for the tmpfs cases, the Slurm test cluster)
#   bash bench/fault_matrix.sh ci       the moderate matrix CI runs (a few minutes)
#
# Extra arguments go to pytest, e.g. `bash bench/fault_matrix.sh full -k local` or `-m "not slurm"`.
set -euo pipefail
cd "$(dirname "$0")/.."
mode="full"
if [[ $# -gt 0 && ($1 == ci || $1 == full) ]]; then
  mode=$1
  shift
fi
python=${PYTHON:-.venv/bin/python}  # PYTHON=/path/to/python for another environment
export HF_HUB_OFFLINE=1 TOKENIZERS_PARALLELISM=false
if [[ $mode == full ]]; then export SPARTA_FAULT_MATRIX=full; else unset SPARTA_FAULT_MATRIX; fi
start=$SECONDS
status=0
"$python" -m pytest -q -p no:cacheprovider tests/run/test_faults.py "$@" || status=$?
echo "fault matrix ($mode): $((SECONDS - start)) s; see ${SPARTA_FAULT_MATRIX_OUT:-bench/out/fault_matrix.md}"
exit "$status"
