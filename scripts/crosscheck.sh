#!/usr/bin/env bash
# Cross-checks sinklab's models against an independent PyTorch implementation
# (scripts/crosscheck_torch.py): GPT-2 and LLaMA style, with and without head-wise RMSNorm, plus
# sigmoid attention and the isolate-positions mask. Needs a built `sinklab` and PyTorch.
#   bash scripts/crosscheck.sh [build_dir] [--device cuda]
# Exit code 77 when no Python with PyTorch is found (ctest reports it as skipped; on CI, with
# CI=true, it fails instead).
set -euo pipefail
cd "$(dirname "$0")/.."
build=${1:-build}
shift || true
python=""
for p in python3 /usr/bin/python3; do
  if command -v "$p" >/dev/null && "$p" -c "import torch" 2>/dev/null; then python=$p; break; fi
done
if [ -z "$python" ]; then
  # On CI (CI=true) PyTorch must be installed (scripts/test.sh does): missing, it is a failure.
  if [ "${CI:-}" = true ]; then echo "crosscheck: FAIL on CI: no python3 with torch" >&2; exit 1; fi
  echo "crosscheck: no python3 with torch found; skipped"
  exit 77
fi
out=$(mktemp -d)
trap 'rm -rf "$out"' EXIT
status=0
i=0
while read -r sets; do
  i=$((i + 1))
  # shellcheck disable=SC2086
  "$build/sinklab" export-reference configs/tiny_test.yaml --out "$out/ref$i.safetensors" \
    --set model.vocab_size=97 --set model.block_size=16 $sets
  if result=$("$python" scripts/crosscheck_torch.py "$out/ref$i.safetensors" "$@"); then
    echo "$result" | tail -n 1
  else
    echo "$result"
    status=1
  fi
done <<'CASES'
--set model.arch=gpt2 --set model.attn_output_norm=none
--set model.arch=gpt2 --set model.attn_output_norm=headwise_rmsnorm --set model.tie_embeddings=false
--set model.arch=llama --set model.attn_output_norm=none
--set model.arch=llama --set model.attn_output_norm=headwise_rmsnorm
--set model.arch=llama --set model.attn_output_norm=headwise_rmsnorm --set model.gamma_shared=true --set model.attention=sigmoid
--set model.arch=gpt2 --set model.attn_output_norm=headwise_rmsnorm --set model.isolate_positions=[3,7]
CASES

# The Hugging Face export (scripts/crosscheck_hf_export.py): config.json read as transformers
# reads it, model.safetensors loaded strictly into the shipped model file's modules, logits equal
# to `sinklab forward`'s. A few steps of training first, so no weight is at its initial value.
"$python" scripts/make_bench_data.py "$out/data" --vocab 256 --tokens 20000 >/dev/null
i=0
while read -r sets; do
  i=$((i + 1))
  run="$out/runs/hf$i"
  # shellcheck disable=SC2086
  "$build/sinklab" train configs/tiny_test.yaml --no-progress --set data.dir="$out/data" \
    --set run.out_dir="$out/runs" --set run.name="hf$i" --set train.steps=3 \
    --set train.eval_every=0 --set train.sample_tokens=0 --set metrics.every=0 $sets >/dev/null
  "$build/sinklab" export "$run/main/ckpt/step_00000003.h5" --format hf --out "$out/hf$i" >/dev/null
  "$build/sinklab" forward "$run/main/ckpt/step_00000003.h5" --ids 5,17,200,3,99,1,0,255,42,7 \
    --out "$out/forward$i.safetensors" >/dev/null
  "$python" scripts/crosscheck_hf_export.py "$out/hf$i" "$out/forward$i.safetensors" || status=1
done <<'CASES'
--set model.arch=gpt2
--set model.arch=gpt2 --set model.tie_embeddings=false --set model.norm_eps=1e-4
--set model.arch=llama --set model.rope_theta=500.0
--set model.arch=llama --set model.tie_embeddings=false
--set model.arch=gpt2 --set model.attn_output_norm=headwise_rmsnorm
--set model.arch=llama --set model.attn_output_norm=headwise_rmsnorm --set model.gamma_shared=true --set model.attention=sigmoid
--set model.arch=gpt2 --set model.isolate_positions=[0,3] --set model.isolate_layers=[1]
CASES
exit $status
