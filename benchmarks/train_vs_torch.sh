#!/usr/bin/env bash
# Training and evaluation throughput of dptrain against PyTorch on the same machine, back to
# back in one invocation, same threads and batch 128:
#   dptrain configs/fmnist-resnet20.cfg --bench STEPS
#   ../shared/bench/torch_throughput.py --nets fmnist-resnet20 (Debian's python3-torch)
# Prints both figures, peak resident memory of both, and
#   RESULT ratio_train=X ratio_eval=Y
# usage: benchmarks/train_vs_torch.sh [threads (2)] [steps (30)]
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root"
build=${DP_BUILD_DIR:-build}
bench_dir=${DP_BENCH_DIR:-$root/../shared/bench}
threads=${1:-2}
steps=${2:-30}
cfg=configs/fmnist-resnet20.cfg
time_bin=/usr/bin/time
[ -x "$time_bin" ] || { echo "train_vs_torch: needs GNU time (apt-get install time)" >&2; exit 1; }

dp_log=$(mktemp)
torch_log=$(mktemp)
trap 'rm -f "$dp_log" "$torch_log"' EXIT

"$time_bin" -f 'maxrss_kib=%M' "$build/dptrain" "$cfg" --bench "$steps" \
  --set "train.threads=$threads" >"$dp_log" 2>&1
(cd "$bench_dir" && OMP_NUM_THREADS=$threads "$time_bin" -f 'maxrss_kib=%M' /usr/bin/python3 \
  torch_throughput.py --threads "$threads" --batch 128 --nets fmnist-resnet20 \
  --eval-nets fmnist-resnet20 --rounds 1 --steps "$steps") >"$torch_log" 2>&1

dp_train=$(sed -n 's/^RESULT train_img_per_s=//p' "$dp_log")
dp_eval=$(sed -n 's/^RESULT eval_img_per_s=//p' "$dp_log")
dp_rss=$(sed -n 's/^maxrss_kib=//p' "$dp_log")
torch_train=$(awk '/^RESULT fmnist-resnet20 +train/ {print $6}' "$torch_log")
torch_eval=$(awk '/^RESULT fmnist-resnet20 +eval/ {print $6}' "$torch_log")
torch_rss=$(sed -n 's/^maxrss_kib=//p' "$torch_log")
if [ -z "$dp_train" ] || [ -z "$torch_train" ] || [ -z "$torch_eval" ]; then
  echo "train_vs_torch: could not read the figures" >&2
  cat "$dp_log" "$torch_log" >&2
  exit 1
fi
core=$("$build/dptrain" --version | sed -n 's/^  openblas: core \([^,]*\),.*/\1/p')
echo "machine: $(nproc) cores, OpenBLAS core $core; threads $threads, batch 128, $steps steps"
echo "dptrain: train $dp_train img/s, eval $dp_eval img/s, peak RSS $((dp_rss / 1024)) MiB"
echo "pytorch: train $torch_train img/s, eval $torch_eval img/s, peak RSS $((torch_rss / 1024)) MiB"
awk -v a="$dp_train" -v b="$torch_train" -v c="$dp_eval" -v d="$torch_eval" \
  'BEGIN { printf "RESULT ratio_train=%.3f ratio_eval=%.3f\n", a / b, c / d }'
