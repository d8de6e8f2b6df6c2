#!/usr/bin/env bash
# Time to 93% test top-1 on Fashion-MNIST (fmnist-resnet20), dptrain against PyTorch, on this
# machine, one after the other:
#   dptrain configs/fmnist-resnet20.cfg as the default job of launch/run runs it: NP ranks
#     (default: launch/ranks.sh's choice, 2 on 2 cores) through launch/mpirun.sh with
#     threads/NP compute threads each, or one process with THREADS threads for NP = 1; NP may be
#     a comma-separated list (e.g. 2,1): dptrain runs once per entry, PyTorch once;
#   ../shared/bench/train_fmnist.py --net fmnist-resnet20 --epochs 12 (Debian's python3-torch),
#     the reference recipe of BASELINES.md; it is stopped once it has crossed the target.
# Each side's time is the wall time from its first training step to the end of the first
# evaluation at >= TARGET (evaluation time included on both sides, data loading excluded).
# Prints both curves and
#   RESULT dptrain_s=A torch_s=B      (seconds to TARGET)
#   RESULT tta_ratio=X                (A / B for the first NP; the target of the issue is X <= 0.55)
#   RESULT tta_ratio_np<N>=X          (for every further NP of the list)
# usage: benchmarks/time_to_accuracy.sh [threads (2)] [target (0.93)] [np: default job's, or 2,1]
#        (about 15 + 35 minutes on 2 Zen 3 cores)
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root"
build=${DP_BUILD_DIR:-build}
bench_dir=${DP_BENCH_DIR:-$root/../shared/bench}
threads=${1:-2}
target=${2:-0.93}
np=${3:-$(launch/ranks.sh configs/fmnist-resnet20.cfg)} # the default job's (launch/run)
data_dir=${DP_DATA_DIR:-data}
[ -f "$data_dir/fmnist-train.h5" ] || "$build/dpdata" convert fashion-mnist \
  --src /usr/share/datasets/fashion-mnist --out "$data_dir/fmnist"

out=$(mktemp -d)
torch_log=$(mktemp)
torch_pid=
cleanup() {
  [ -n "$torch_pid" ] && kill "$torch_pid" 2>/dev/null || true
  rm -rf "$out" "$torch_log"
}
trap cleanup EXIT
echo "# $(date -u +%FT%TZ) $(git rev-parse --short HEAD 2>/dev/null || echo '?') threads=$threads np=$np" \
  "load=$(cut -d' ' -f1-3 /proc/loadavg)"
IFS=, read -r -a nps <<<"$np"
for n in "${nps[@]}"; do
  [[ $n =~ ^[1-9][0-9]*$ ]] || { echo "time_to_accuracy: bad np '$n'" >&2; exit 2; }
  dp_args=(configs/fmnist-resnet20.cfg --out "$out/run-np$n"
    --set "data.train=$data_dir/fmnist-train.h5" --set "data.test=$data_dir/fmnist-test.h5")
  echo "dptrain np=$n:"
  if [ "$n" -gt 1 ]; then
    per_rank=$(( threads / n > 0 ? threads / n : 1 ))
    DP_BUILD_DIR=$build launch/mpirun.sh -np "$n" "${dp_args[@]}" \
      --set "train.threads=$per_rank" | tr '\r' '\n' | grep -E '^(epoch .* done|final:)'
  else
    "$build/dptrain" "${dp_args[@]}" --set "train.threads=$threads" | grep -E '^(epoch .* done|final:)'
  fi
done

(cd "$bench_dir" && exec /usr/bin/python3 train_fmnist.py --net fmnist-resnet20 --epochs 12 \
  --threads "$threads") >"$torch_log" 2>&1 &
torch_pid=$!
# PyTorch's log: "epoch train_loss train_acc test_loss test_acc train_s eval_s wall_s lr"
while kill -0 "$torch_pid" 2>/dev/null; do
  if awk -v t="$target" '$1 ~ /^[0-9]+$/ && $5 >= t { f = 1 } END { exit !f }' "$torch_log"; then
    kill "$torch_pid" 2>/dev/null || true
    break
  fi
  sleep 5
done
wait "$torch_pid" 2>/dev/null || true
torch_pid=
sed 's/^/torch: /' "$torch_log"

# dptrain: epoch records of metrics.jsonl carry "time" (s since the first step) and "test_top1".
seconds_to_target() {
  /usr/bin/python3 - "$1" "$target" <<'PY'
import json, sys
t = float(sys.argv[2])
for line in open(sys.argv[1]):
    r = json.loads(line)
    if r.get("kind") == "epoch" and r.get("test_top1") is not None and r["test_top1"] >= t:
        print(r["time"]); break
else:
    print("")
PY
}
torch_s=$(awk -v t="$target" '$1 ~ /^[0-9]+$/ && $5 >= t { print $8; exit }' "$torch_log")
status=0
for i in "${!nps[@]}"; do
  n=${nps[$i]}
  dp_s=$(seconds_to_target "$out/run-np$n/metrics.jsonl")
  key=tta_ratio
  [ "$i" -eq 0 ] || key=tta_ratio_np$n
  echo "dptrain np=$n: ${dp_s:-never} s to $target; PyTorch: ${torch_s:-never} s to $target"
  if [ "$i" -eq 0 ]; then
    echo "RESULT dptrain_s=${dp_s:-nan} torch_s=${torch_s:-nan}"
  else
    echo "RESULT dptrain_np${n}_s=${dp_s:-nan}"
  fi
  if [ -z "$dp_s" ] || [ -z "$torch_s" ]; then
    echo "RESULT $key=nan"
    status=1
  else
    awk -v a="$dp_s" -v b="$torch_s" -v k="$key" 'BEGIN { printf "RESULT %s=%.3f\n", k, a / b }'
  fi
done
exit $status
