#!/usr/bin/env bash
# launch/dptrain.sbatch under a real SLURM on localhost (munged, slurmctld and slurmd with all
# their state, sockets, logs and free TCP ports in one temp directory), end to end:
#   0. reference: the deterministic tiny cfg, uninterrupted, under mpirun -np 2 directly;
#   1. a 2-task job gets `scancel --batch --signal=USR1` mid-run (what --signal=B:USR1@120
#      sends before the time limit): rank 0 writes a checkpoint, the log says "stopped by a
#      signal at step N; checkpoint: P", the script requeues the job, which resumes from P and
#      ends with the reference's params_sha256;
#   2. a job gets `scancel --batch --signal=TERM`: it checkpoints and stops for good
#      (COMPLETED, not requeued); `scontrol requeue JOB` then resumes it to the same end.
# Prints one line per check and a closing "N passed, N failed". Exit 77 (SKIP) when SLURM is
# missing and cannot be installed (apt-get, as root).
# usage: slurm_test.sh BUILD_DIR
# shellcheck disable=SC2317 # functions called from traps and through poll
set -u
build=$(cd "${1:?usage: slurm_test.sh BUILD_DIR}" && pwd)
src=$(cd "$(dirname "$0")/../.." && pwd)
t_start=$SECONDS

skip() {
  echo "SKIP: $*"
  exit 77
}

# A caller's own SLURM job must not leak into ours.
while read -r v; do unset "$v"; done < <(env | sed -n 's/^\(SLURM[A-Z_]*\)=.*/\1/p')

# --- packages ---
have_slurm() {
  command -v slurmctld && command -v slurmd && command -v sbatch && command -v munged &&
    command -v mungekey
} >/dev/null
if ! have_slurm; then
  [ "$(id -u)" -eq 0 ] || skip "SLURM is not installed and this is not root"
  command -v apt-get >/dev/null || skip "SLURM is not installed and there is no apt-get"
  echo "installing slurmctld slurmd slurm-client munge"
  pkgs=(slurmctld slurmd slurm-client munge)
  export DEBIAN_FRONTEND=noninteractive
  if ! apt-get install -y -q --no-install-recommends "${pkgs[@]}" >/dev/null 2>&1; then
    apt-get update -q >/dev/null 2>&1
    apt-get install -y -q --no-install-recommends "${pkgs[@]}" >/dev/null 2>&1 ||
      skip "apt-get install ${pkgs[*]} failed"
  fi
  have_slurm || skip "SLURM commands missing after apt-get install"
fi
[ "$(id -u)" -eq 0 ] || skip "slurmd must run as root here (SlurmdUser=root)"
command -v mpirun >/dev/null || skip "mpirun not found"
[ -x "$build/dptrain" ] || skip "$build/dptrain not built"
export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1

# --- the cluster ---
D=$(mktemp -d /tmp/dpslurm.XXXXXX) # short: the munge socket path must fit in sun_path
jobs_submitted=()
teardown() {
  export SLURM_CONF=$D/slurm.conf
  if [ -f "$D/slurmctld.pid" ]; then
    for j in "${jobs_submitted[@]}"; do scancel "$j" 2>/dev/null; done
    for _ in $(seq 100); do [ -z "$(squeue -h 2>/dev/null)" ] && break; sleep 0.1; done
    scontrol shutdown >/dev/null 2>&1
  fi
  for f in slurmctld.pid slurmd.pid; do
    [ -f "$D/$f" ] || continue
    p=$(cat "$D/$f")
    for _ in $(seq 100); do kill -0 "$p" 2>/dev/null || break; sleep 0.1; done
    kill -KILL "$p" 2>/dev/null
  done
  if [ -f "$D/munge/munged.pid" ]; then
    p=$(cat "$D/munge/munged.pid")
    kill "$p" 2>/dev/null
    for _ in $(seq 50); do kill -0 "$p" 2>/dev/null || break; sleep 0.1; done
  fi
  rm -rf "$D"
}
trap teardown EXIT
trap 'exit 1' INT TERM HUP

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
poll() { # seconds, command...: until the command succeeds; 1 on time-out
  local end=$((SECONDS + $1))
  shift
  until "$@"; do
    [ "$SECONDS" -lt "$end" ] || return 1
    sleep 0.1
  done
}
finish() {
  echo "slurm test: $((SECONDS - t_start)) s"
  echo "$pass passed, $fail failed"
  [ "$fail" -eq 0 ] && exit 0
  exit 1
}
show_logs() {
  for f in "$D"/log/*.log "$D/munge/munged.log"; do
    [ -f "$f" ] && { echo "--- $f (tail)"; tail -n 15 "$f"; }
  done
}

mkdir -p "$D"/{munge,state,spool,log}
chmod 700 "$D/munge"
mungekey -c -k "$D/munge/munge.key" >/dev/null 2>&1 ||
  dd if=/dev/urandom of="$D/munge/munge.key" bs=1024 count=1 status=none
chmod 400 "$D/munge/munge.key"
if ! munged --force --key-file="$D/munge/munge.key" --socket="$D/munge/munge.sock" \
  --pid-file="$D/munge/munged.pid" --log-file="$D/munge/munged.log" \
  --seed-file="$D/munge/munged.seed"; then
  check "munged starts" 1
  show_logs
  finish
fi

# Two free TCP ports for slurmctld and slurmd, chosen by the kernel.
free_ports() {
  if [ -x /usr/bin/python3 ]; then
    /usr/bin/python3 -c 'import socket
s = [socket.socket() for _ in range(2)]
for x in s: x.bind(("127.0.0.1", 0))
print(*[x.getsockname()[1] for x in s])'
  else # the kernel's ephemeral range, skipping ports something listens on
    local lo hi p found=()
    read -r lo hi </proc/sys/net/ipv4/ip_local_port_range
    while [ "${#found[@]}" -lt 2 ]; do
      p=$((lo + RANDOM % (hi - lo)))
      (: <"/dev/tcp/127.0.0.1/$p") 2>/dev/null || found+=("$p")
    done
    echo "${found[@]}"
  fi
}
read -r ctld_port slurmd_port < <(free_ports)
cpus=$(nproc)
[ "$cpus" -ge 2 ] || cpus=2 # 2 tasks even on one CPU (config_overrides keeps the node up)
cat >"$D/slurm.conf" <<CONF
ClusterName=dptraintest
SlurmctldHost=localhost
SlurmctldPort=$ctld_port
SlurmdPort=$slurmd_port
SlurmUser=root
SlurmdUser=root
AuthType=auth/munge
CredType=cred/munge
# cred_expire is also how long a requeued job waits before it may start again (default 120 s)
AuthInfo=socket=$D/munge/munge.sock,cred_expire=5
StateSaveLocation=$D/state
SlurmdSpoolDir=$D/spool
SlurmctldPidFile=$D/slurmctld.pid
SlurmdPidFile=$D/slurmd.pid
SlurmctldLogFile=$D/log/slurmctld.log
SlurmdLogFile=$D/log/slurmd.log
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
SelectType=select/cons_tres
SelectTypeParameters=CR_Core
MpiDefault=pmix
MailProg=/bin/true
ReturnToService=2
SlurmdParameters=config_overrides
# the main scheduling loop every 1 s (default 60 s): a requeued job starts once eligible
SchedulerParameters=sched_interval=1
AccountingStorageType=accounting_storage/none
JobAcctGatherType=jobacct_gather/none
JobCompType=jobcomp/none
NodeName=localhost CPUs=$cpus RealMemory=1000 State=UNKNOWN
PartitionName=debug Nodes=ALL Default=YES MaxTime=INFINITE State=UP
CONF
export SLURM_CONF=$D/slurm.conf
slurmctld -i >"$D/log/slurmctld.out" 2>&1
slurmd -N localhost >"$D/log/slurmd.out" 2>&1 # -N: the host's own name is not "localhost"
node_idle() { sinfo -h -o %t 2>/dev/null | grep -qx idle; }
poll 30 node_idle
ok=$?
echo "cluster up after $((SECONDS - t_start)) s (ports $ctld_port, $slurmd_port; state in $D)"
check "munged, slurmctld and slurmd start; the node is idle" $ok
if [ "$ok" -ne 0 ]; then
  show_logs
  finish
fi

# --- the job: a tiny deterministic cfg that runs for a few seconds ---
epochs=1000
steps=$((epochs * 4))
cat >"$D/net.cfg" <<'CFG'
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
crop_pad=1
flip=1

[train]
log_every=20
seed=3
threads=1
micro_batch=4
deterministic=1

[convolutional]
filters=8
size=3
pad=1
batch_normalize=1
activation=relu

[maxpool]
size=2
stride=2

[connected]
output=4
activation=linear

[softmax]
CFG
opts=(--set "train.epochs=$epochs")
sha() { tr '\r' '\n' <"$1" | sed -n "s/^final: .* steps=$steps .*params_sha256=\([0-9a-f]*\)$/\1/p" | tail -n 1; }

t0=$SECONDS
mpirun -np 2 "$build/dptrain" "$D/net.cfg" --out "$D/ref" "${opts[@]}" \
  >"$D/ref.log" 2>&1
ref=$(sha "$D/ref.log")
echo "reference (mpirun -np 2, uninterrupted): $((SECONDS - t0)) s, params_sha256=${ref:-none}"
[ -n "$ref" ]
check "reference run under mpirun -np 2 finishes" $?

submit() { # name, then environment assignments; prints the job id
  local name=$1
  shift
  (cd "$D" && env "$@" DPTRAIN_OUT="$D/out-$name" DPTRAIN_ROOT="$src" DP_BUILD_DIR="$build" \
    sbatch --parsable --job-name="$name" --ntasks-per-node=2 -o "$D/$name.out" \
    "$src/launch/dptrain.sbatch" "$D/net.cfg" "${opts[@]}")
}
state() { scontrol show job "$1" 2>/dev/null | sed -n 's/.*JobState=\([A-Z_]*\).*/\1/p'; }
restarts() { scontrol show job "$1" 2>/dev/null | sed -n 's/.*Restarts=\([0-9]*\).*/\1/p'; }
is_state() { [ "$(state "$1")" = "$2" ]; }
gone() { [ -z "$(squeue -h -j "$1" 2>/dev/null)" ]; }
training() { [ -f "$1" ] && tr '\r' '\n' <"$1" | grep -q 'epoch [0-9]*/[0-9]* done: step'; }
log_has() { [ -f "$1" ] && tr '\r' '\n' <"$1" | grep -q "$2"; }
stop_ckpt() { tr '\r' '\n' <"$1" | sed -n 's/^stopped by a signal at step [0-9]*; checkpoint: //p' | head -n 1; }

# run NAME SIGNAL [env...]: submit, wait until it trains, signal the batch shell; sets job, log
start_and_signal() {
  local name=$1 sig=$2
  shift 2
  log=$D/$name.out
  t0=$SECONDS
  job=$(submit "$name" "$@")
  jobs_submitted+=("$job")
  poll 60 is_state "$job" RUNNING && poll 60 training "$log"
  check "$name: job $job runs and trains ($((SECONDS - t0)) s after sbatch)" $?
  scancel --batch --signal="$sig" "$job"
  t_sig=$SECONDS
}

# 1. USR1 (the time-limit warning): checkpoint, stop, requeue by the script, resume.
start_and_signal usr1 USR1
poll 60 log_has "$log" 'requeueing job'
ck=$(stop_ckpt "$log")
echo "usr1: stopped $((SECONDS - t_sig)) s after the signal; checkpoint ${ck:-none}"
[ -n "$ck" ] && [ -f "$ck" ]
check "usr1: log shows 'stopped by a signal at step N; checkpoint: P' and P exists" $?
poll 60 log_has "$log" "resuming from $ck"
check "usr1: the script requeued the job, which resumes from P ($((SECONDS - t_sig)) s)" $?
poll 120 gone "$job"
s=$(sha "$log")
echo "usr1: $(state "$job"), restarts $(restarts "$job"), params_sha256=${s:-none}," \
  "$((SECONDS - t_sig)) s after the signal"
is_state "$job" COMPLETED && [ "$(restarts "$job")" = 1 ] && [ -n "$s" ] && [ "$s" = "$ref" ]
check "usr1: the resumed job completes with the reference's params_sha256" $?

# 2. TERM: checkpoint and stop for good; `scontrol requeue` continues it.
start_and_signal term TERM
poll 60 gone "$job"
ck=$(stop_ckpt "$log")
echo "term: $(state "$job") $((SECONDS - t_sig)) s after the signal; checkpoint ${ck:-none}"
is_state "$job" COMPLETED && [ -n "$ck" ] && [ -f "$ck" ] && [ "$(restarts "$job")" = 0 ] &&
  ! log_has "$log" 'requeueing job'
check "term: checkpoint P written, the job COMPLETED and was not requeued" $?
t_rq=$SECONDS
scontrol requeue "$job"
poll 60 log_has "$log" "resuming from $ck"
check "term: after scontrol requeue the job resumes from P ($((SECONDS - t_rq)) s)" $?
poll 120 gone "$job"
s=$(sha "$log")
echo "term: $(state "$job"), restarts $(restarts "$job"), params_sha256=${s:-none}," \
  "$((SECONDS - t_rq)) s after the requeue"
is_state "$job" COMPLETED && [ -n "$s" ] && [ "$s" = "$ref" ]
check "term: the requeued job completes with the reference's params_sha256" $?

if [ "$fail" -ne 0 ]; then
  for f in "$D"/*.out; do
    echo "--- $f"
    tr '\r' '\n' <"$f" | grep -v 'epoch [0-9]*/[0-9]* done' | tail -n 20
  done
  show_logs
fi
finish
