#!/usr/bin/env bash
# Prints how many ranks the default job runs CFG with on this machine (launch/run and
# benchmarks/time_to_accuracy.sh use it): $DP_NP when set; else one rank per GPU when dptrain
# sees CUDA devices (and CFG does not say backend=cpu); else one rank per physical core, at
# most one per 32 samples of CFG's global batch ([net] batch); 1 when mpirun is missing.
# On small CNNs several single-threaded ranks beat one process with as many threads (2 Zen 3
# cores, fmnist-resnet20: 2 ranks x 1 thread 843-1,006 s to 93%, 1 rank x 2 threads 1,140 s;
# benchmarks/RESULTS.md), and below ~32 samples per rank the GEMMs get too thin.
#   launch/ranks.sh CFG
set -euo pipefail
[ $# -eq 1 ] || {
  echo "usage: launch/ranks.sh CFG" >&2
  exit 2
}
if [ -n "${DP_NP:-}" ]; then
  case $DP_NP in
    "" | *[!0-9]* | 0*)
      echo "ranks.sh: error: DP_NP wants a positive integer, got '$DP_NP'" >&2
      exit 2
      ;;
  esac
  echo "$DP_NP"
  exit 0
fi
if ! command -v mpirun >/dev/null; then
  echo 1
  exit 0
fi
root=$(cd "$(dirname "$0")/.." && pwd)
build_dir=${DP_BUILD_DIR:-build}
case $build_dir in /*) ;; *) build_dir=$root/$build_dir ;; esac
if ! grep -Eq '^[ \t]*backend[ \t]*=[ \t]*cpu' "$1" && [ -x "$build_dir/dptrain" ]; then
  gpus=$("$build_dir/dptrain" --version 2>/dev/null |
    sed -n 's/^ *cuda: *yes (runtime [^)]*), \([0-9][0-9]*\) device.*/\1/p' | head -n 1)
  case $gpus in "" | *[!0-9]* | 0) ;; *)
    echo "$gpus"
    exit 0
    ;;
  esac
fi
cpus=$(nproc)
tpc=1
if command -v lscpu >/dev/null; then
  tpc=$(lscpu | sed -n 's/^Thread(s) per core: *\([0-9]*\)$/\1/p')
  case $tpc in "" | *[!0-9]* | 0) tpc=1 ;; esac
fi
cores=$((cpus / tpc))
[ "$cores" -ge 1 ] || cores=1
# [net] batch: the first batch= of the file's first section.
batch=$(awk -F= '/^\[/ { s++ } s == 1 && $1 ~ /^[ \t]*batch[ \t]*$/ { gsub(/[ \t]/, "", $2); print $2; exit }' "$1")
case $batch in "" | *[!0-9]*) batch=32 ;; esac
np=$((batch / 32))
[ "$np" -ge 1 ] || np=1
[ "$np" -le "$cores" ] || np=$cores
echo "$np"
