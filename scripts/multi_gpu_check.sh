#!/usr/bin/env bash
# Issue 21 on a multi-GPU machine, in one call after a build (scripts/gpu_check.sh builds):
#   1. scaling: bench_scaling.sh for 1, 2, 4, ..., N GPUs, GPT-2 124M and LLaMA-152M head-wise,
#      metrics every step (SKIP_SCALING=1 skips it);
#   2. variants over GPU groups: `compare` of baseline and head-wise RMSNorm
#      (configs/bench/llama_152m_compare.yaml) on 1 GPU, then split over N GPUs (N/2 per
#      variant, run.variant_placement split) with the same global batch; per variant, the
#      batch_hash of every step must agree and the losses within LOSS_RTOL (2e-3: bf16, another
#      reduction order);
#   3. faults: N ranks train GPT-2; once 8 steps are logged, SIGKILL to the last rank. Every
#      other rank must exit non-zero within FAULT_LIMIT_S (120) naming it, and --resume auto on
#      1 GPU must continue from the last checkpoint.
#   bash scripts/multi_gpu_check.sh [build_dir] [N]
# BENCH_DEVICE=cpu runs parts 2 and 3 on CPU processes over TCP (a smoke test of this script on
# a machine without GPUs; pair it with small shapes in BENCH_SET, "a.b=v c.d=w", and their
# batch_size x block_size in RANK_TOKENS, 32768 by default: B=32 x T=1024).
set -uo pipefail
cd "$(dirname "$0")/.."
build=${1:-build-gpu}
device=${BENCH_DEVICE:-cuda}
if [ "$device" = cuda ]; then n=${2:-$(nvidia-smi -L 2>/dev/null | wc -l)}; else n=${2:-4}; fi
out=${OUT:-/tmp}
rtol=${LOSS_RTOL:-2e-3}
limit=${FAULT_LIMIT_S:-120}
export NCCL_NVLS_ENABLE=0  # NVLink multicast stays off on shared hosts
[ "$n" -ge 2 ] && [ $((n % 2)) -eq 0 ] || { echo "multi_gpu_check.sh: N=$n must be even and >= 2"; exit 2; }
[ -f data/bench/train_000000.bin ] || python3 scripts/make_bench_data.py data/bench --vocab 50304 --tokens 4000000
sets=(--set run.device="$device")
for s in ${BENCH_SET:-}; do sets+=(--set "$s"); done
status=0
# N ranks of `sinklab ARGS...` with torchrun-style variables, rank r's log $out/<name>.log.<r>;
# rank 0 in the foreground; returns rank 0's exit status once all have ended.
ranks() {
  local name=$1; shift
  local port=$((29000 + RANDOM % 900)) pids=() r
  for ((r = n - 1; r >= 1; --r)); do
    env RANK=$r LOCAL_RANK=$r WORLD_SIZE="$n" MASTER_ADDR=127.0.0.1 MASTER_PORT=$port \
      "$build/sinklab" "$@" > "$out/$name.log.$r" 2>&1 &
    pids+=($!)
  done
  env RANK=0 LOCAL_RANK=0 WORLD_SIZE="$n" MASTER_ADDR=127.0.0.1 MASTER_PORT=$port \
    "$build/sinklab" "$@" > "$out/$name.log.0" 2>&1
  local rc=$?
  for p in "${pids[@]}"; do wait "$p"; done
  return $rc
}

if [ "$device" = cuda ] && [ -z "${SKIP_SCALING:-}" ]; then
  echo "== 1. scaling (metrics every step)"
  counts=""
  for ((k = 2; k <= n; k *= 2)); do counts="$counts $k"; done
  [ $((n & (n - 1))) -eq 0 ] || counts="$counts $n"
  bash scripts/bench_scaling.sh "$build" "$counts" both || status=1
fi

echo "== 2. variants over GPU groups: compare on 1 GPU, then split over $n"
config=configs/bench/llama_152m_compare.yaml
global=$(( (n / 2) * ${RANK_TOKENS:-32768} ))  # each of a group's n/2 ranks takes one batch
rm -rf runs/vg_1 runs/vg_split
common=(compare "$config" --no-progress --set train.tokens_per_step="$global" "${sets[@]}")
"$build/sinklab" "${common[@]}" --set run.name=vg_1 > "$out/vg_1.log" 2>&1 ||
  { tail -20 "$out/vg_1.log"; status=1; }
ranks vg_split "${common[@]}" --set run.name=vg_split --set run.variant_placement=split ||
  { tail -20 "$out/vg_split.log.0"; status=1; }
python3 - "$rtol" <<'PY' || status=1
import json, sys
rtol = float(sys.argv[1])
ok = True
for v in ("baseline", "headwise_rmsnorm"):
    def rows(run):
        return [json.loads(l) for l in open(f"runs/{run}/{v}/metrics.jsonl") if '"loss":null' not in l]
    one, split = rows("vg_1"), rows("vg_split")
    hashes = all(a["batch_hash"] == b["batch_hash"] for a, b in zip(one, split))
    worst = max(abs(a["loss"] - b["loss"]) / abs(a["loss"]) for a, b in zip(one, split))
    good = len(one) == len(split) > 0 and hashes and worst <= rtol
    ok &= good
    print(f"  {v}: {len(one)} steps, batch_hash {'equal' if hashes else 'DIFFERENT'}, "
          f"largest relative loss difference {worst:.2e} (limit {rtol:g}): {'ok' if good else 'FAILED'}")
    tok1 = sorted(r["tokens_per_s"] for r in one[3:])[len(one[3:]) // 2]
    tokn = sorted(r["tokens_per_s"] for r in split[3:])[len(split[3:]) // 2]
    print(f"    tokens/s of the variant: 1 GPU {tok1:.0f}, its group {tokn:.0f}")
sys.exit(0 if ok else 1)
PY

echo "== 3. faults: SIGKILL to rank $((n - 1)) of $n"
fault=(train configs/bench/gpt2_124m.yaml --no-progress --set run.name=fault --set train.steps=100000
       --set checkpoint.every=5 --set checkpoint.keep_last=2 --set run.collective_timeout_s=600 "${sets[@]}")
rm -rf runs/fault
port=$((29000 + RANDOM % 900))
pids=()
for ((r = 0; r < n; ++r)); do
  env RANK=$r LOCAL_RANK=$r WORLD_SIZE="$n" MASTER_ADDR=127.0.0.1 MASTER_PORT=$port \
    "$build/sinklab" "${fault[@]}" > "$out/fault.log.$r" 2>&1 &
  pids+=($!)
done
for _ in $(seq 1 1200); do
  [ "$(cat runs/fault/main/metrics.jsonl 2>/dev/null | wc -l)" -ge 8 ] && break
  sleep 0.5
done
kill -KILL "${pids[$((n - 1))]}"
t0=$(date +%s.%N)
survivors_ok=1
for ((r = 0; r < n - 1; ++r)); do
  wait "${pids[$r]}"
  rc=$?
  named=$(grep -c "rank $((n - 1))" "$out/fault.log.$r")
  echo "  rank $r: exit $rc, names rank $((n - 1)): $([ "$named" -gt 0 ] && echo yes || echo no)" \
       "($(grep -m1 -o 'error: .*' "$out/fault.log.$r" | cut -c1-160))"
  [ $rc -ne 0 ] && [ "$named" -gt 0 ] || survivors_ok=0
done
took=$(python3 -c "import sys, time; print(f'{time.time() - float(sys.argv[1]):.1f}')" "$t0")
echo "  every other rank ended $took s after the kill (limit $limit s)"
python3 -c "import sys; sys.exit(0 if float(sys.argv[1]) <= float(sys.argv[2]) else 1)" "$took" "$limit" ||
  survivors_ok=0
last=$(sed -n 's/^step_0*\([0-9][0-9]*\)\.h5$/\1/p' runs/fault/main/ckpt/latest 2>/dev/null)
"$build/sinklab" "${fault[@]}" --resume auto --stop-after $((${last:-0} + 2)) \
  > "$out/fault_resume.log" 2>&1
resumed=$(grep -m1 "resumed main from" "$out/fault_resume.log")
echo "  --resume auto on 1 process: ${resumed:-NOT RESUMED (see $out/fault_resume.log)}"
[ -n "$resumed" ] && [ $survivors_ok -eq 1 ] || status=1
exit $status
