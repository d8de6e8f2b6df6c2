#!/usr/bin/env bash
# Time to 93% test top-1 on Fashion-MNIST (fmnist-resnet20), dptrain against PyTorch, on this
# machine, one after the other:
#   dptrain configs/fmnist-resnet20.cfg (the default job of launch/run)
#   ../shared/bench/train_fmnist.py --net fmnist-resnet20 --epochs 12 (Debian's python3-torch)
# Each side's time is the wall time from its first training step to the end of the first
# evaluation at >= TARGET. Prints both curves' crossing points and
#   RESULT tta_ratio=X   (dptrain seconds / PyTorch seconds)
# usage: benchmarks/time_to_accuracy.sh [threads (2)] [target (0.93)]   (takes ~1 hour on 2 cores)
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root"
build=${DP_BUILD_DIR:-build}
bench_dir=${DP_BENCH_DIR:-$root/../shared/bench}
threads=${1:-2}
target=${2:-0.93}
data_dir=${DP_DATA_DIR:-data}
[ -f "$data_dir/fmnist-train.h5" ] || "$build/dpdata" convert fashion-mnist \
  --src /usr/share/datasets/fashion-mnist --out "$data_dir/fmnist"

out=$(mktemp -d)
torch_log=$(mktemp)
trap 'rm -rf "$out" "$torch_log"' EXIT
"$build/dptrain" configs/fmnist-resnet20.cfg --out "$out/run" --set "train.threads=$threads" \
  --set "data.train=$data_dir/fmnist-train.h5" --set "data.test=$data_dir/fmnist-test.h5" \
  | tail -n 3
(cd "$bench_dir" && /usr/bin/python3 train_fmnist.py --net fmnist-resnet20 --epochs 12 \
  --threads "$threads") >"$torch_log" 2>&1

# dptrain: epoch lines of metrics.jsonl carry "time" (s since the first step) and "test_top1".
dp_s=$(/usr/bin/python3 - "$out/run/metrics.jsonl" "$target" <<'PY'
import json, sys
t = float(sys.argv[2])
for line in open(sys.argv[1]):
    r = json.loads(line)
    if r.get("kind") == "epoch" and r.get("test_top1") is not None and r["test_top1"] >= t:
        print(r["time"]); break
else:
    print("")
PY
)
# PyTorch: "epoch train_loss train_acc test_loss test_acc train_s eval_s wall_s lr"
torch_s=$(awk -v t="$target" '$1 ~ /^[0-9]+$/ && $5 >= t { print $8; exit }' "$torch_log")
echo "dptrain: ${dp_s:-never} s to $target; PyTorch: ${torch_s:-never} s to $target"
if [ -z "$dp_s" ] || [ -z "$torch_s" ]; then
  echo "RESULT tta_ratio=nan"
  exit 1
fi
awk -v a="$dp_s" -v b="$torch_s" 'BEGIN { printf "RESULT tta_ratio=%.3f\n", a / b }'
