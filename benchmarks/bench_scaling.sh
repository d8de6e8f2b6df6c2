#!/usr/bin/env bash
# Weak scaling of fmnist-resnet20 training on this machine: 1 compute thread per rank, the same
# per-rank batch (64), synthetic data (dptrain --bench N: 5 untimed + N timed steps; with
# mpirun only rank 0 prints, and its img/s counts the global batch). Every round runs:
#   np1   dptrain CFG --bench N --set net.batch=64 --set train.threads=1   (one process, CPU 0)
#   pair  two such processes started together, pinned to CPUs 0 and 1: the honest baseline for
#         2 ranks (on a VM two vCPUs may share a physical core, caches or memory bandwidth)
#   np2   mpirun -np 2 ... --set net.batch=128 (64 per rank), ranks bound to cores
#   np2d  np2 with --set train.deterministic=1 --set train.micro_batch=32
#   np2s  np2 with --set net.subdivisions=2: the same 32-image micro-batches as np2d without
#         the deterministic reduction, to split np2d's cost into micro-batching and reduction
# (odd rounds in this order, even rounds in the reverse order, so that a drifting load biases
# no ratio). Printed, from the best img/s of each configuration over the rounds (on a shared
# machine interference only slows a run down, so the best run is the least disturbed one):
#   RESULT scaling_eff_np2=E            np2 / (pair_a + pair_b)
#   RESULT scaling_np2_vs_2x_np1=R      np2 / (2 x np1)
#   RESULT det_overhead=D               1 - np2d / np2
#   RESULT det_overhead_same_micro=D2   1 - np2d / np2s
# with the img/s behind them and step_ms_np1 (compute time of one 64-image step at np=1);
# then the medians of the same ratios taken round by round.
#
# usage: benchmarks/bench_scaling.sh [ROUNDS (default 6)] [STEPS (default 20)]
# environment: DP_BUILD_DIR (default build), DP_CFG (default configs/fmnist-resnet20.cfg)
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root"
rounds=${1:-6}
steps=${2:-20}
build_dir=${DP_BUILD_DIR:-build}
case $build_dir in /*) ;; *) build_dir=$root/$build_dir ;; esac
dptrain=$build_dir/dptrain
cfg=${DP_CFG:-configs/fmnist-resnet20.cfg}
if [ ! -x "$dptrain" ]; then
  echo "bench_scaling: error: $dptrain not built" >&2
  exit 1
fi
if [ "$(id -u)" -eq 0 ]; then
  export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1
fi
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT

common=(--bench "$steps" --set train.threads=1 --set data.source=synthetic
  --set train.log_every=1000000)
mpi=(mpirun -np 2 --bind-to core --map-by core)
pin() { # cpu, command...: pinned when taskset exists
  local c=$1
  shift
  if command -v taskset >/dev/null; then taskset -c "$c" "$@"; else "$@"; fi
}
rate() { # name: runs "$work/$name.log" through the RESULT line; prints img/s or fails
  local v
  v=$(sed -n 's/^RESULT train_img_per_s=\([0-9.]*\)$/\1/p' "$work/$1.log" | tail -n 1)
  if [ -z "$v" ]; then
    echo "bench_scaling: error: no RESULT from $1:" >&2
    tail -n 5 "$work/$1.log" >&2
    exit 1
  fi
  echo "$v"
}
median() { sort -g | awk '{ v[NR] = $1 } END { print (NR % 2) ? v[(NR + 1) / 2] : (v[NR / 2] + v[NR / 2 + 1]) / 2 }'; }
best() { sort -g | tail -n 1; }

run_np1() {
  pin 0 "$dptrain" "$cfg" "${common[@]}" --set net.batch=64 --out "$work/o1" >"$work/np1.log" 2>&1
  n1=$(rate np1)
}
run_pair() {
  local pa pb
  pin 0 "$dptrain" "$cfg" "${common[@]}" --set net.batch=64 --out "$work/oa" >"$work/pa.log" 2>&1 &
  pa=$!
  pin 1 "$dptrain" "$cfg" "${common[@]}" --set net.batch=64 --out "$work/ob" >"$work/pb.log" 2>&1 &
  pb=$!
  wait "$pa" "$pb"
  a=$(rate pa)
  b=$(rate pb)
}
run_np2() {
  "${mpi[@]}" "$dptrain" "$cfg" "${common[@]}" --set net.batch=128 --out "$work/o2" \
    >"$work/np2.log" 2>&1
  n2=$(rate np2)
}
run_np2d() {
  "${mpi[@]}" "$dptrain" "$cfg" "${common[@]}" --set net.batch=128 \
    --set train.deterministic=1 --set train.micro_batch=32 --out "$work/o2d" >"$work/np2d.log" 2>&1
  n2d=$(rate np2d)
}
run_np2s() {
  "${mpi[@]}" "$dptrain" "$cfg" "${common[@]}" --set net.batch=128 --set net.subdivisions=2 \
    --out "$work/o2s" >"$work/np2s.log" 2>&1
  n2s=$(rate np2s)
}
ratios() { # np1 pair_a pair_b np2 np2d np2s -> eff ratio det det_same_micro
  awk -v n1="$1" -v a="$2" -v b="$3" -v n2="$4" -v d="$5" -v s="$6" \
    'BEGIN { printf "%.3f %.3f %.3f %.3f\n", n2 / (a + b), n2 / (2 * n1), 1 - d / n2, 1 - d / s }'
}

echo "machine: $(nproc) CPUs, $(lscpu 2>/dev/null | sed -n 's/^Model name: *//p'), load $(cut -d' ' -f1-3 /proc/loadavg)"
"$dptrain" --version 2>/dev/null | grep -i 'openblas\|mpi' | sed 's/^ */  /' || true
echo "cfg $cfg, --bench $steps, 64 images per rank, train.threads=1, $rounds rounds"
fmt='%-6s %8s %8s %8s %8s %8s %8s | %6s %6s %6s %6s | %5s\n'
# shellcheck disable=SC2059 # the format is a variable on purpose
printf "$fmt" round np1 pair_a pair_b np2 np2_det np2_sub2 eff ratio det det_sm load1
for r in $(seq "$rounds"); do
  if [ $((r % 2)) -eq 1 ]; then
    run_np1
    run_pair
    run_np2
    run_np2d
    run_np2s
  else
    run_np2s
    run_np2d
    run_np2
    run_pair
    run_np1
  fi
  read -r eff ratio det dsm < <(ratios "$n1" "$a" "$b" "$n2" "$n2d" "$n2s")
  # shellcheck disable=SC2059
  printf "$fmt" "$r" "$n1" "$a" "$b" "$n2" "$n2d" "$n2s" "$eff" "$ratio" "$det" "$dsm" \
    "$(cut -d' ' -f1 /proc/loadavg)"
  echo "$n1" >>"$work/np1"
  awk -v a="$a" -v b="$b" 'BEGIN { print a + b, a, b }' >>"$work/pair"
  echo "$n2" >>"$work/np2"
  echo "$n2d" >>"$work/np2d"
  echo "$n2s" >>"$work/np2s"
  echo "$eff" >>"$work/eff"
  echo "$ratio" >>"$work/ratio"
  echo "$det" >>"$work/det"
  echo "$dsm" >>"$work/dsm"
done

b1=$(best <"$work/np1")
read -r _ ba bb < <(sort -g "$work/pair" | tail -n 1)
b2=$(best <"$work/np2")
b2d=$(best <"$work/np2d")
b2s=$(best <"$work/np2s")
read -r eff ratio det dsm < <(ratios "$b1" "$ba" "$bb" "$b2" "$b2d" "$b2s")
echo "best of $rounds rounds (load now $(cut -d' ' -f1-3 /proc/loadavg)):"
echo "RESULT np1_img_per_s=$b1"
echo "RESULT pair_img_per_s=$(awk -v a="$ba" -v b="$bb" 'BEGIN { print a + b }')"
echo "RESULT np2_img_per_s=$b2"
echo "RESULT np2_det_img_per_s=$b2d"
echo "RESULT np2_sub2_img_per_s=$b2s"
echo "RESULT step_ms_np1=$(awk -v r="$b1" 'BEGIN { printf "%.1f", 64000 / r }')"
echo "RESULT scaling_eff_np2=$eff"
echo "RESULT scaling_np2_vs_2x_np1=$ratio"
echo "RESULT det_overhead=$det"
echo "RESULT det_overhead_same_micro=$dsm"
echo "medians of the per-round ratios: scaling_eff_np2 $(median <"$work/eff")," \
  "np2_vs_2x_np1 $(median <"$work/ratio"), det_overhead $(median <"$work/det")," \
  "det_overhead_same_micro $(median <"$work/dsm")"
