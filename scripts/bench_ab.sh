#!/usr/bin/env bash
# A/B of run settings in one call, on one GPU: sinklab's tokens/s for each labelled setting,
# one after another (the median of steps 4+ of each run, through bench_gpu.sh).
#   bash scripts/bench_ab.sh build_dir model 'label|ENV=v ...|a.b=v c.d=w' ...
#     model: gpt2, gpt2_headwise or llama (bench_gpu.sh's); each argument is a label, the
#     environment for that run (may be empty) and the --set overrides (may be empty).
#   AB_STEPS (10), AB_METRICS (0: metrics off; "0 1": both), AB_ROUNDS (1): every setting
#   again per round, so that drift over the call shows. At the end, scripts/ab_summary.py's
#   summary: each setting against the first, paired by round, with a verdict against the first
#   setting's own spread over the rounds (two rounds or more).
#   AB_BUILD=dir among a setting's environment runs that setting with another build (e.g. an
#   earlier commit's tree built beside this one: the A/B of two commits on one card).
# Example: bash scripts/bench_ab.sh build-gpu gpt2 'defaults||' 'fold||run.fold_residual_grads=true'
set -uo pipefail
cd "$(dirname "$0")/.."
build=${1:?build dir}; model=${2:?model}; shift 2
lines=$(mktemp)
trap 'rm -f "$lines"' EXIT
for round in $(seq "${AB_ROUNDS:-1}"); do
  for spec in "$@"; do
    IFS='|' read -r label envs sets <<< "$spec"
    rm -rf runs/bench_"$model"_*
    run_build=$(env $envs bash -c 'echo "${AB_BUILD:-}"')
    line=$(env $envs BENCH_SET="$sets" BENCH_STEPS="${AB_STEPS:-10}" \
      BENCH_METRICS="${AB_METRICS:-0}" BENCH_TORCH_MODES= \
      bash scripts/bench_gpu.sh "${run_build:-$build}" "$model" 2>&1 |
      grep -E "sinklab bf16|rror" | sed -E 's/ +/ /g; s/MFU.*//' | tr '\n' ';')
    echo "round $round $model [$label] $line" | tee -a "$lines"
  done
done
python3 scripts/ab_summary.py "$lines" || true
