#!/usr/bin/env bash
# Training throughput of sinklab vs PyTorch (eager and torch.compile, bf16 autocast, fused AdamW,
# flash SDPA) on the same GPU, same model, same batch, in one call; prints tokens/s, MFU and the
# ratios. Random tokens: speed only. The final evaluation's output effective rank (untimed, and
# seconds of CPU at 124M) is off.
#   bash scripts/bench_gpu.sh [build_dir] [gpt2|gpt2_headwise|llama|all]
#     all: the three below one after another (issue 16's table in one call, about 4 minutes
#     with BENCH_TORCH_MODES=compile), each model's summary as it finishes
#     gpt2:  GPT-2 124M (12 x 768, T=1024, V=50304), configs/bench/gpt2_124m.yaml
#     gpt2_headwise: the same with head-wise RMSNorm (model.attn_output_norm=headwise_rmsnorm)
#     llama: the paper's LLaMA-style 152M with head-wise RMSNorm, configs/bench/llama_152m.yaml
#   BENCH_BATCH (32), BENCH_STEPS (12): batch size and steps (the median of steps 4+ counts).
#   BENCH_TORCH_MODES ("eager compile"): the PyTorch runs ("" skips them).
#   BENCH_METRICS ("0 1"): the sinklab runs, metrics off (0) and every step (1).
#   BENCH_ROUNDS (1): the sinklab runs repeated, alternating, this many times; each figure is
#   the median over the rounds (the rounds' values are printed too), so that a drift in the
#   card's clocks over the call weighs less on the metrics' cost.
#   BENCH_METRICS_EQUAL=1 adds a metrics-every-step run with the metrics' side stream at the
#   compute stream's priority (run.metrics_priority=equal). BENCH_FP32=1 adds the fp32 runs
#   of both; BENCH_PROFILE=1 adds a run.profile run (where a step's time goes, per phase)
#   and, when ncu is installed, a kernel summary. BENCH_SET ("a.b=v c.d=w") adds --set overrides
#   to every sinklab run (e.g. "run.attention_kernels=own").
set -uo pipefail
cd "$(dirname "$0")/.."
build=${1:-build-gpu}
model=${2:-gpt2}
batch=${BENCH_BATCH:-32}
steps=${BENCH_STEPS:-12}
out=${OUT:-/tmp}
if [ "$model" = all ]; then
  status=0
  for m in gpt2 gpt2_headwise llama; do
    bash scripts/bench_gpu.sh "$build" "$m" > "$out/bench_$m.log" 2>&1 || status=1
    grep -v "^torch " "$out/bench_$m.log"
  done
  exit $status
fi
rm -f "$out/memory.txt"
case $model in
  gpt2) config=configs/bench/gpt2_124m.yaml; torch_args=(--arch gpt2) ;;
  gpt2_headwise) config=configs/bench/gpt2_124m.yaml; torch_args=(--arch gpt2 --headwise)
    BENCH_SET="${BENCH_SET:-} model.attn_output_norm=headwise_rmsnorm" ;;
  llama) config=configs/bench/llama_152m.yaml; torch_args=(--arch llama --ffn 3072 --headwise) ;;
  *) echo "bench_gpu.sh: model '$model' is not gpt2, gpt2_headwise or llama"; exit 2 ;;
esac
[ -f data/bench/train_000000.bin ] || python3 scripts/make_bench_data.py data/bench --vocab 50304 --tokens 4000000
median_tok_s() {  # median tokens/s of the steps after the first three, from metrics.jsonl;
  # the peak device memory (the pool's high-water mark, as torch.cuda.max_memory_allocated
  # counts PyTorch's) and the largest at a step's end are added to $out/memory.txt
  python3 - "$1" "$out/memory.txt" <<'PY'
import json, sys
rows = [json.loads(l) for l in open(sys.argv[1])]
v = sorted(r["tokens_per_s"] for r in rows[3:] if r.get("tokens_per_s"))
def largest(key):
    values = [r[key] for r in rows if isinstance(r.get(key), (int, float))]
    return max(values) if values else float("nan")
print(f"{v[len(v)//2]:.0f}" if v else "nan")
with open(sys.argv[2], "a") as f:
    f.write(f"  sinklab {sys.argv[1]}: peak device memory {largest('memory_peak_mib'):.0f} MiB "
            f"(largest at a step's end {largest('memory_mib'):.0f} MiB)\n")
PY
}
sinklab() {  # name, then --set overrides; prints the median tokens/s
  local name=$1; shift
  local sets=()
  for s in ${BENCH_SET:-} "$@"; do sets+=(--set "$s"); done
  "$build/sinklab" train "$config" --no-progress --set train.batch_size="$batch" \
    --set train.steps="$steps" --set run.name="bench_$name" --set metrics.rank_sequences=0 \
    "${sets[@]}" \
    > "$out/sinklab_$name.log" 2>&1 || tail -20 "$out/sinklab_$name.log" >&2
  median_tok_s "runs/bench_$name/main/metrics.jsonl" 2>/dev/null || echo nan
}
declare -A r rounds
for round in $(seq "${BENCH_ROUNDS:-1}"); do
  for every in ${BENCH_METRICS-0 1}; do
    rounds[bf16_m$every]+=" $(sinklab ${model}_bf16_m$every metrics.every=$every)"
  done
done
for key in "${!rounds[@]}"; do  # the median over the rounds (nan where any run failed)
  r[$key]=$(python3 -c 'import math, sys
v = sorted(float(x) for x in sys.argv[1:])
print("nan" if any(math.isnan(x) for x in v) else f"{v[len(v) // 2]:.0f}")' ${rounds[$key]})
  [ "${BENCH_ROUNDS:-1}" -gt 1 ] && echo "sinklab $key, each round:${rounds[$key]} tok/s"
done
if [ -n "${BENCH_METRICS_EQUAL:-}" ]; then  # the metrics' side stream at the compute priority
  r[bf16_m1eq]=$(sinklab ${model}_bf16_m1eq metrics.every=1 run.metrics_priority=equal)
  echo "sinklab bf16, metrics every step, side stream at equal priority: ${r[bf16_m1eq]} tok/s"
fi
for mode in ${BENCH_TORCH_MODES-eager compile}; do
  flag=$([ $mode = compile ] && echo --compile)
  line=$(python3 scripts/bench_torch.py "${torch_args[@]}" --batch "$batch" --steps "$steps" --dtype bf16 $flag 2>&1 | tail -1)
  echo "$line"
  r[torch_${mode}_bf16]=$(echo "$line" | awk '$4 == "tok/s" {print $5}')
  # the peak memory PyTorch reports, beside sinklab's in the summary
  echo "$line" | awk -v m="$mode" '$4 == "tok/s" {
    for (i = 1; i < NF; ++i) if ($i == "peak_mib") printf "  torch %s bf16: peak device memory %s MiB\n", m, $(i + 1)
  }' >> "$out/memory.txt"
done
if [ -n "${BENCH_FP32:-}" ]; then
  r[fp32_m0]=$(sinklab ${model}_fp32_m0 metrics.every=0 run.precision=fp32)
  line=$(python3 scripts/bench_torch.py "${torch_args[@]}" --batch "$batch" --steps "$steps" --dtype fp32 2>&1 | tail -1)
  r[torch_eager_fp32]=$(echo "$line" | awk '$4 == "tok/s" {print $5}')
fi
if [ -n "${BENCH_PROFILE:-}" ]; then
  "$build/sinklab" train "$config" --no-progress --set train.batch_size="$batch" \
    --set train.steps=6 --set metrics.every=1 --set run.name=bench_profile --set run.profile=true \
    2>&1 | grep "^profile"
  if command -v ncu > /dev/null; then  # every kernel of one step with metrics, timed by ncu
    timeout 300 ncu --csv --metrics gpu__time_duration.sum --clock-control none --cache-control none \
      "$build/sinklab" train "$config" --no-progress --set train.batch_size="$batch" \
      --set train.steps=1 --set metrics.every=1 --set run.name=bench_ncu > "$out/ncu_$model.csv" \
      2> "$out/ncu_$model.err" || tail -5 "$out/ncu_$model.err"
    python3 scripts/kernel_summary.py 1 < "$out/ncu_$model.csv" | tee "$out/kernels_$model.txt"
  fi
fi
python3 - "$model" "$batch" "${r[bf16_m0]:-nan}" "${r[bf16_m1]:-nan}" "${r[torch_eager_bf16]:-nan}" \
  "${r[torch_compile_bf16]:-nan}" "${r[fp32_m0]:-nan}" "${r[torch_eager_fp32]:-nan}" <<'PY'
import math, sys
model, batch = sys.argv[1], int(sys.argv[2])
m0, m1, eager, comp, f32, eager32 = (float(x) if x not in ("", "nan") else math.nan for x in sys.argv[3:9])
L, C, T, V = 12, 768, 1024, 50304
gpt2 = model.startswith("gpt2")
F = 4 * C if gpt2 else 3072
per_layer = 4 * C * C + (2 if gpt2 else 3) * C * F
flops_per_token = 6 * (L * per_layer + V * C) + 12 * L * C * T  # as bench_torch.py counts
peak = 989.5e12  # H200 dense bf16
name = {"gpt2": "GPT-2 124M", "gpt2_headwise": "GPT-2 124M, head-wise RMSNorm"}.get(
    model, "LLaMA-style 152M, head-wise RMSNorm")
print(f"{name}, B={batch}, T={T}: tokens/s (median of steps 4+), MFU at {peak/1e12:.0f} TFLOP/s")
rows = [("sinklab bf16, metrics off", m0), ("sinklab bf16, metrics every step", m1),
        ("torch eager bf16", eager), ("torch.compile bf16", comp),
        ("sinklab fp32, metrics off", f32), ("torch eager fp32", eager32)]
for label, v in rows:
    if not math.isnan(v):
        print(f"  {label:<34} {v:>10.0f} tok/s  MFU {100 * v * flops_per_token / peak:5.1f}%")
print(f"  metrics every step cost {100 * (m0 / m1 - 1):.1f}% of tokens/s")
print(f"  sinklab / torch eager   = {m0 / eager:.3f}")
print(f"  sinklab / torch.compile = {m0 / comp:.3f}")
print(f"  sinklab, metrics every step / torch.compile = {m1 / comp:.3f}")
PY
# each side's peak memory under its model's table (a run repeated over rounds: its last round's)
if [ -f "$out/memory.txt" ]; then
  awk '{ if (!($2 in last)) order[n++] = $2; last[$2] = $0 } END { for (i = 0; i < n; ++i) print last[order[i]] }' "$out/memory.txt"
  rm -f "$out/memory.txt"
fi
