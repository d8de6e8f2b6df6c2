#!/usr/bin/env bash
# ResNet-50 training throughput of dptrain against PyTorch on the same GPU, back to back in one
# invocation: 224x224 synthetic images, batch 256, bf16.
#   dptrain configs/resnet50.cfg --bench STEPS --set train.backend=cuda
#       --set train.precision=bf16 --set net.batch=256 --set net.height=224 --set net.width=224
#   the same with --set train.deterministic=1
#   benchmarks/torch_resnet50.py --batch 256 --steps STEPS (AMP bf16, channels_last)
# (resnet50.cfg is Darknet's, 256x256: the --set lines make it the 224x224 of the comparison.)
# Prints the three figures and
#   RESULT ratio_resnet50=X   (dptrain img/s / PyTorch img/s; the target is >= 1.0)
#   RESULT det_frac=Y         (deterministic img/s / default img/s; the target is >= 0.9)
# Prints "SKIP: ..." and exits 0 where dptrain has no usable CUDA device or PyTorch cannot run.
# usage: benchmarks/gpu_resnet50.sh [steps (100)]
#   DP_BUILD_DIR (build), DP_TORCH_PYTHON (python3: the interpreter with a CUDA torch)
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root"
build=${DP_BUILD_DIR:-build}
python=${DP_TORCH_PYTHON:-python3}
steps=${1:-100}
case $steps in
'' | *[!0-9]* | 0)
  echo "gpu_resnet50: steps must be a positive integer, not '$steps'" >&2
  exit 2
  ;;
esac
[ -x "$build/dptrain" ] || {
  echo "gpu_resnet50: no $build/dptrain (build it, or set DP_BUILD_DIR)" >&2
  exit 1
}

version=$("$build/dptrain" --version)
if ! grep -Eq '^ +cuda: +yes \(runtime [^)]*\), [1-9][0-9]* device' <<<"$version"; then
  echo "SKIP: dptrain has no usable CUDA device: $(grep -E '^ +cuda:' <<<"$version" || echo '?')"
  exit 0
fi

logs=$(mktemp -d)
trap 'rm -rf "$logs"' EXIT
dp_args=(configs/resnet50.cfg --bench "$steps" --set train.backend=cuda
  --set train.precision=bf16 --set net.batch=256 --set net.height=224 --set net.width=224)

# Reads "RESULT key=value" from a log; fails with the log when it is missing.
result() {
  local v
  v=$(sed -n "s/^RESULT $2=//p" "$1" | tail -n 1)
  if [ -z "$v" ]; then
    echo "gpu_resnet50: no RESULT $2 in the output of $3:" >&2
    cat "$1" >&2
    exit 1
  fi
  echo "$v"
}

"$build/dptrain" "${dp_args[@]}" >"$logs/dp.log" 2>&1 || {
  cat "$logs/dp.log" >&2
  exit 1
}
"$build/dptrain" "${dp_args[@]}" --set train.deterministic=1 >"$logs/det.log" 2>&1 || {
  cat "$logs/det.log" >&2
  exit 1
}
"$python" benchmarks/torch_resnet50.py --batch 256 --steps "$steps" --precision bf16 \
  >"$logs/torch.log" 2>&1 || {
  cat "$logs/torch.log" >&2
  exit 1
}
if grep -q '^SKIP:' "$logs/torch.log"; then
  dp=$(result "$logs/dp.log" train_img_per_s dptrain)
  echo "dptrain: train $dp img/s (bf16, batch 256, 224x224)"
  echo "SKIP: no PyTorch figure to compare with ($python): $(grep '^SKIP:' "$logs/torch.log")"
  exit 0
fi

dp=$(result "$logs/dp.log" train_img_per_s "dptrain")
det=$(result "$logs/det.log" train_img_per_s "dptrain deterministic=1")
torch=$(result "$logs/torch.log" torch_train_img_per_s "torch_resnet50.py")
grep -E '^ +(cuda|nccl|device)' <<<"$version" || true
grep -E '^(gpu|versions|setup|time):' "$logs/torch.log" || true
echo "dptrain: train $dp img/s (bf16, batch 256, 224x224, $steps steps after 5 untimed)"
echo "dptrain deterministic=1: train $det img/s"
echo "pytorch: train $torch img/s"
awk -v a="$dp" -v b="$torch" -v c="$det" \
  'BEGIN { printf "RESULT ratio_resnet50=%.3f\nRESULT det_frac=%.3f\n", a / b, c / a }'
