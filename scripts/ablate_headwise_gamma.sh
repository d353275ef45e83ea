#!/usr/bin/env bash
# Head-wise RMSNorm's val loss against the baseline's, by the size of gamma's initial value and
# gamma's weight decay, on the quick start (configs/quickstart.yaml: a 4 x 128 LLaMA-style model,
# 300 steps of 1,024 tokens of Moby Dick, CPU), for several seeds. Each line is one `sinklab
# compare`: the baseline and head-wise RMSNorm on identical batches, the difference paired over
# the same validation batches. About a minute a line on 2 cores. docs/REPRODUCTION.md
# ("Head-wise RMSNorm's lag and gamma's size") reports its output.
#   bash scripts/ablate_headwise_gamma.sh [build_dir]
#   SEEDS ("1337 2024"), SETTINGS (the lines below: label|--set overrides), OUT_DIR (/tmp/...)
set -uo pipefail
cd "$(dirname "$0")/.."
build=${1:-build}
out_dir=${OUT_DIR:-$(mktemp -d /tmp/sinklab_gamma.XXXXXX)}
default_settings='first_token_std|
ones|model.gamma_init=ones
first_token_std, no decay|model.gamma_weight_decay=false
ones, no decay|model.gamma_init=ones model.gamma_weight_decay=false
first_token_std x 0.5|model.gamma_init_scale=0.5
first_token_std x 0.25|model.gamma_init_scale=0.25
first_token_std x 0.125|model.gamma_init_scale=0.125'
[ -x "$build/sinklab" ] || { echo "ablate_headwise_gamma.sh: no $build/sinklab (build first)"; exit 2; }
[ -f data/quickstart/train_000000.bin ] || "$build/sinklab" prepare configs/quickstart.yaml > /dev/null || exit 1
printf "%-38s %6s  %s\n" "head-wise gamma init" "seed" "val loss, head-wise - baseline (paired s.e.)"
status=0
for seed in ${SEEDS:-1337 2024}; do
  while IFS='|' read -r label sets; do
    [ -n "$label" ] || continue
    args=(--set run.seed="$seed" --set run.out_dir="$out_dir" --set metrics.every=50
          --set train.eval_batches=32 --set checkpoint.every=0
          --set run.name="gamma_${seed}_$(echo "$label" | tr -c 'a-z0-9' '_')")
    for s in $sets; do args+=(--set "$s"); done
    line=$("$build/sinklab" compare configs/quickstart.yaml --no-progress "${args[@]}" 2>&1 |
           grep "^val loss, headwise_rmsnorm - baseline") || { status=1; line="failed"; }
    printf "%-38s %6s  %s\n" "$label" "$seed" "${line#val loss, headwise_rmsnorm - baseline: }"
  done <<< "${SETTINGS:-$default_settings}"
done
echo "runs in $out_dir"
exit $status
