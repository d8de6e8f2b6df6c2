#!/usr/bin/env bash
# launch/mpirun.sh: the mpirun flags it picks (--dry-run), a graceful stop on SIGTERM and on a
# terminal-style SIGINT to its process group (checkpoint written, exit 0), and mpirun's exit
# status passed through; launch/ranks.sh: the default job's number of ranks. Prints one line per check and a closing "N passed, N failed".
# usage: mpirun_sh_test.sh BUILD_DIR
# shellcheck disable=SC2317 # functions called through poll
set -u
build=$(cd "${1:?usage: mpirun_sh_test.sh BUILD_DIR}" && pwd)
src=$(cd "$(dirname "$0")/../.." && pwd)
wrap=$src/launch/mpirun.sh
command -v mpirun >/dev/null || {
  echo "SKIP: mpirun not found"
  exit 77
}
export DP_BUILD_DIR=$build
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
pass=0
fail=0
check() { # name, condition status
  if [ "$2" -eq 0 ]; then
    echo "PASS $1"
    pass=$((pass + 1))
  else
    echo "FAIL $1"
    fail=$((fail + 1))
  fi
}
poll() { # seconds, command...
  local end=$((SECONDS + $1))
  shift
  until "$@"; do
    [ "$SECONDS" -lt "$end" ] || return 1
    sleep 0.1
  done
}

cpus=$(nproc)
tpc=$(lscpu 2>/dev/null | sed -n 's/^Thread(s) per core: *\([0-9]*\)$/\1/p')
cores=$((cpus / ${tpc:-1}))
[ "$cores" -ge 1 ] || cores=1

out=$("$wrap" --dry-run cfg.cfg --set a.b=1)
echo "default: $out"
[[ $out == "mpirun -np $cores --map-by slot:PE=1 --bind-to core $build/dptrain cfg.cfg --set a.b=1 " ]]
check "default: one rank per core, each bound to its core" $?
out=$("$wrap" -np 1 --dry-run cfg.cfg)
echo "-np 1: $out"
[[ $out == *"-np 1 --map-by slot:PE=$cores --bind-to core "* && $out != *oversubscribe* ]]
check "-np 1: bound to all $cores cores, no --oversubscribe" $?
out=$("$wrap" -np $((cores + 1)) --dry-run cfg.cfg)
echo "-np $((cores + 1)): $out"
[[ $out == *"-np $((cores + 1)) --oversubscribe --map-by slot --bind-to none "* ]]
check "-np cores+1: --oversubscribe --bind-to none" $?
"$wrap" -np 0 cfg.cfg >/dev/null 2>&1
[ $? -eq 2 ]
check "-np 0: usage error, exit 2" $?

# launch/ranks.sh: the default job's ranks (launch/run). No GPU is visible in this build's
# runs here unless dptrain reports one; then it is one rank per GPU.
ranks=$src/launch/ranks.sh
gpus=$("$build/dptrain" --version | sed -n 's/^ *cuda: *yes (runtime [^)]*), \([0-9][0-9]*\) device.*/\1/p')
printf '[net]\nbatch=64\n[convolutional]\nbatch=999\n' >"$work/b64.cfg"
printf '[net]\nbatch=16\n' >"$work/b16.cfg"
printf '[net]\nbatch=4096\n[train]\nbackend=cpu\n' >"$work/big.cfg"
want=$((cores < 2 ? cores : 2))
out=$("$ranks" "$work/b64.cfg")
[ -n "$gpus" ] || [ "$out" = "$want" ]
check "ranks.sh: batch 64 -> min(cores, 2) = $want ranks (got $out)" $?
out=$("$ranks" "$work/b16.cfg")
[ -n "$gpus" ] || [ "$out" = 1 ]
check "ranks.sh: batch 16 -> 1 rank (got $out)" $?
out=$("$ranks" "$work/big.cfg")
[ "$out" = "$cores" ]
check "ranks.sh: batch 4096, backend=cpu -> one rank per core, $cores (got $out)" $?
out=$(DP_NP=3 "$ranks" "$work/b16.cfg")
[ "$out" = 3 ]
check "ranks.sh: DP_NP=3 wins (got $out)" $?
DP_NP=x "$ranks" "$work/b16.cfg" >/dev/null 2>&1
[ $? -eq 2 ]
check "ranks.sh: DP_NP=x is a usage error, exit 2" $?

cat >"$work/net.cfg" <<'CFG'
[net]
batch=16
height=8
width=8
channels=1
learning_rate=0.05
momentum=0.9
policy=constant

[data]
source=synthetic
samples=64
test_samples=32

[train]
epochs=100000
log_every=20
seed=3
threads=1

[convolutional]
filters=8
size=3
pad=1
activation=relu

[connected]
output=4
activation=linear

[softmax]
CFG
training() { grep -q 'epoch [0-9]*/[0-9]* done: step' "$1" 2>/dev/null; }
stop_ckpt() { sed -n 's/^stopped by a signal at step [0-9]*; checkpoint: //p' "$1" | head -n 1; }

# SIGTERM to the wrapper: mpirun gets SIGUSR1, the ranks checkpoint and stop, exit 0.
"$wrap" -np 2 "$work/net.cfg" --out "$work/term" >"$work/term.log" 2>&1 &
w=$!
poll 60 training "$work/term.log"
t0=$SECONDS
kill -TERM "$w"
wait "$w"
rc=$?
ck=$(stop_ckpt "$work/term.log")
echo "SIGTERM: exit $rc after $((SECONDS - t0)) s, checkpoint ${ck:-none}"
[ "$rc" -eq 0 ] && [ -n "$ck" ] && [ -f "$ck" ] && grep -q '^final: ' "$work/term.log"
check "SIGTERM to the wrapper: checkpoint, final line, exit 0" $?

# Ctrl-C in a terminal: SIGINT to the wrapper's whole process group. Only possible when this
# shell did not inherit SIGINT as ignored (then neither would the wrapper).
ign=$(sed -n 's/^SigIgn:[[:space:]]*//p' /proc/$$/status 2>/dev/null)
if [ -n "$ign" ] && (((16#$ign & 2) == 0)); then
  set -m # the wrapper in a process group of its own, as a terminal's foreground job
  "$wrap" -np 2 "$work/net.cfg" --out "$work/int" >"$work/int.log" 2>&1 &
  w=$!
  set +m
  poll 60 training "$work/int.log"
  kill -INT -- "-$w"
  wait "$w"
  rc=$?
  ck=$(stop_ckpt "$work/int.log")
  echo "SIGINT to the process group: exit $rc, checkpoint ${ck:-none}"
  [ "$rc" -eq 0 ] && [ -n "$ck" ] && [ -f "$ck" ]
  check "Ctrl-C (SIGINT to the process group): checkpoint and exit 0" $?
else
  echo "(SIGINT is ignored in this shell: the Ctrl-C check is left out)"
fi

# mpirun's status comes through: a cfg that does not exist fails on every rank.
"$wrap" -np 2 "$work/missing.cfg" >"$work/missing.log" 2>&1
rc=$?
echo "missing cfg: exit $rc"
[ "$rc" -ne 0 ]
check "a failing job: the wrapper exits non-zero with mpirun" $?

echo "$pass passed, $fail failed"
[ "$fail" -eq 0 ]
