#!/usr/bin/env bash
# Data-parallel training on this machine: runs build/dptrain under mpirun with the flags this
# kind of machine needs, and turns an interrupt into a graceful stop.
#
#   launch/mpirun.sh [-np N] [--dry-run] CFG [dptrain options]
#   launch/mpirun.sh -np 2 configs/fmnist-resnet20.cfg --set train.threads=1
#
# - N (default: the number of physical cores available to this process) ranks on this host.
# - As root, sets OMPI_ALLOW_RUN_AS_ROOT=1 and OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1 (mpirun refuses
#   root otherwise).
# - N <= cores: `--map-by slot:PE=C --bind-to core`, C = cores / N: each rank is bound to its
#   own C cores (dptrain then uses cores / ranks-per-node BLAS threads unless [train] threads
#   is set). N > cores: `--oversubscribe --map-by slot --bind-to none` (ranks that wait in a
#   collective busy-poll, so oversubscribed runs are for testing, not for speed).
# - SIGTERM, SIGINT and SIGHUP are sent on to mpirun as SIGUSR1, which mpirun forwards to every
#   rank unchanged: the ranks finish the step they agree on, rank 0 writes
#   OUTDIR/ckpt-step<N>.h5 and all exit 0 (mpirun's own reaction to SIGTERM/SIGINT is to kill
#   the ranks within ~2 s). SIGUSR1/SIGUSR2 are passed on as they are. mpirun runs in a process
#   group of its own, so Ctrl-C in a terminal reaches only this script, which forwards it.
# - Exits with mpirun's status.
#
# Environment: DP_BUILD_DIR (default build, relative to the repository root unless absolute),
# DP_MPIRUN_ARGS (extra mpirun options, split on spaces, e.g. "--report-bindings").
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)

usage() {
  echo "usage: launch/mpirun.sh [-np N] [--dry-run] CFG [dptrain options]" >&2
  exit 2
}

np=""
dry=0
while [ $# -gt 0 ]; do
  case $1 in
    -np | -n | --np)
      [ $# -ge 2 ] || usage
      np=$2
      shift 2
      ;;
    --dry-run)
      dry=1
      shift
      ;;
    -h | --help)
      sed -n '2,/^set -euo/{/^set -euo/d;s/^# \{0,1\}//;p}' "$0"
      exit 0
      ;;
    -*) usage ;;
    *) break ;;
  esac
done
[ $# -ge 1 ] || usage
case $np in
  "" | *[!0-9]* | 0*)
    if [ -n "$np" ]; then
      echo "mpirun.sh: error: -np wants a positive integer, got '$np'" >&2
      exit 2
    fi
    ;;
esac

# Physical cores available to this process: the CPUs in its affinity mask (nproc) divided by
# the hardware threads per core.
cpus=$(nproc)
tpc=1
if command -v lscpu >/dev/null; then
  tpc=$(lscpu | sed -n 's/^Thread(s) per core: *\([0-9]*\)$/\1/p')
  case $tpc in "" | *[!0-9]* | 0) tpc=1 ;; esac
fi
cores=$((cpus / tpc))
[ "$cores" -ge 1 ] || cores=1
np=${np:-$cores}

if [ "$np" -le "$cores" ]; then
  place=(--map-by "slot:PE=$((cores / np))" --bind-to core)
else
  place=(--oversubscribe --map-by slot --bind-to none)
fi

build_dir=${DP_BUILD_DIR:-build}
case $build_dir in /*) ;; *) build_dir=$root/$build_dir ;; esac
dptrain=$build_dir/dptrain

if [ "$(id -u)" -eq 0 ]; then
  export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1
fi
extra=()
if [ -n "${DP_MPIRUN_ARGS:-}" ]; then
  read -r -a extra <<<"$DP_MPIRUN_ARGS"
fi
cmd=(mpirun -np "$np" "${place[@]}" "${extra[@]}" "$dptrain" "$@")

if [ "$dry" -eq 1 ]; then
  printf '%q ' "${cmd[@]}"
  printf '\n'
  exit 0
fi
if [ ! -x "$dptrain" ]; then
  echo "mpirun.sh: error: $dptrain not found; build first (launch/setup)" >&2
  exit 1
fi

# Signals: remember one that comes before mpirun exists, forward the rest.
mp=""
pending=""
got=0
# shellcheck disable=SC2317 # called by the traps
forward() { # signal to send to mpirun
  got=1
  if [ -n "$mp" ]; then kill "-$1" "$mp" 2>/dev/null || true; else pending=$1; fi
}
trap 'forward USR1' TERM INT HUP USR1
trap 'forward USR2' USR2

set -m # mpirun in its own process group: a terminal's Ctrl-C goes to this script only
"${cmd[@]}" &
mp=$!
set +m
if [ -n "$pending" ]; then kill "-$pending" "$mp" 2>/dev/null || true; fi

# wait returns early (status > 128) whenever a trapped signal arrives: wait again until mpirun
# itself has ended (127 from wait: its status was the one already collected).
set +e
rc=""
while :; do
  got=0 # set by a trap that interrupts wait
  wait "$mp"
  r=$?
  if [ "$r" -eq 127 ] && [ -n "$rc" ]; then break; fi
  rc=$r
  if [ "$r" -le 128 ] || [ "$got" -eq 0 ]; then break; fi
done
exit "$rc"
