#!/usr/bin/env bash
# SPARTA, its ablations and the self-rewarding baseline at demo scale (tiny CPU models, inline), each through
# plan -> ... -> evaluate -> report, then one `sparta-hpc compare` table over all of them.
# Usage: bash bench/baselines.sh [OUT_DIR]   (default bench/out/baselines; an existing run is resumed)
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
export HF_HUB_OFFLINE=1 TOKENIZERS_PARALLELISM=false
out=${1:-bench/out/baselines}
mkdir -p "$out"
# logprob judging: the tiny random models rarely write a parsable score, the logprob judge always scores
common=(run.iterations=2 plan.num_prompts=8 generate.max_new_tokens=16 train.max_length=96
        judge.method=logprob eval.max_new_tokens=16 task.synthetic_eval_size=16)
names=(sparta uniform-aggregation random-pairing released-fixed-schedule self-rewarding)
overrides=("" "rate.aggregation=uniform" "plan.pairing=random" "run.profile=released" "run.mode=self_rewarding")
for i in "${!names[@]}"; do
  name=${names[$i]}
  # shellcheck disable=SC2086  # an empty override adds nothing
  .venv/bin/python launch.py --cluster inline --run-dir "$out/$name" "${common[@]}" "run.name=$name" ${overrides[$i]} \
    > "$out/$name.log" 2>&1 || { tail -20 "$out/$name.log"; exit 1; }
  .venv/bin/sparta-hpc report "$out/$name" > /dev/null
  echo "$name: done ($out/$name, report in $out/$name/report)"
done
.venv/bin/sparta-hpc compare "${names[@]/#/$out/}" --out "$out/compare"
cat "$out/compare/compare.md"
