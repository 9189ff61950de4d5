#!/usr/bin/env bash
# slurm-ci.sh -- a throwaway single-node SLURM cluster on localhost, for CI and tests.
#
#   scripts/slurm-ci.sh install   apt-get install slurm-wlm slurm-client munge (only what is missing)
#   scripts/slurm-ci.sh start     write /etc/slurm/{slurm,gres}.conf, start munged, slurmctld, slurmd,
#                                 wait until the node is idle (no-op if already up; runs `install` first)
#   scripts/slurm-ci.sh stop      cancel jobs, stop the daemons this script started (no-op if down),
#                                 move its /etc/slurm/*.conf aside (see cmd_stop)
#   scripts/slurm-ci.sh restart   stop + start (needed after changing node/GRES settings)
#   scripts/slurm-ci.sh status    daemons, sinfo, squeue
#
# Needs root and apt (Debian/Ubuntu). Does not use systemd: the daemons are started directly.
# Everything it writes (pids, spool, logs) lives under $SLURM_CI_STATE, except the two config files
# in /etc/slurm (the default location, so no SLURM_CONF is needed by clients).
#
# Knobs (environment):
#   SLURM_CI_STATE      state dir                      (default /tmp/slurm-ci)
#   SLURM_CI_CPUS       CPUs the node declares         (default: nproc)
#   SLURM_CI_MEM_MB     RealMemory in MB               (default: MemTotal minus max(1 GiB, 20%))
#   SLURM_CI_GPUS       gpu GRES count, 0..5           (default 1; placeholder device files, or the
#                                                       real /dev/nvidiaN if present)
#   SLURM_CI_PARTITION  partition name                 (default debug)
#   SLURM_CI_TIMEOUT    seconds to wait for idle node  (default 60)
#   SLURM_CI_FORCE=1    overwrite an /etc/slurm/slurm.conf that this script did not write
# The node may declare more CPUs/memory than the hardware has (SlurmdParameters=config_overrides),
# so e.g. SLURM_CI_CPUS=8 lets rules with threads: 8 be scheduled on a 2-core runner.
set -euo pipefail

STATE=${SLURM_CI_STATE:-/tmp/slurm-ci}
NODE=localhost
PARTITION=${SLURM_CI_PARTITION:-debug}
GPUS=${SLURM_CI_GPUS:-1}
TIMEOUT=${SLURM_CI_TIMEOUT:-60}
CONF_DIR=/etc/slurm
PKGS=(slurm-wlm slurm-client munge)

log() { printf '[slurm-ci] %s\n' "$*" >&2; }
die() { printf '[slurm-ci] ERROR: %s\n' "$*" >&2; exit 1; }

need_root() { [ "$(id -u)" = 0 ] || die "must run as root (it writes /etc/slurm and starts daemons)"; }

# --- process helpers ------------------------------------------------------------------------------
# PID 1 here is not a real init, so killed daemons linger as zombies: check the state, not /proc/PID.
alive() {  # alive PID EXPECTED_COMM
  local pid=$1 comm=$2 st
  [ -n "$pid" ] && [ -r "/proc/$pid/stat" ] || return 1
  [ "$(cat "/proc/$pid/comm" 2>/dev/null)" = "$comm" ] || return 1
  st=$(awk '{print $3}' "/proc/$pid/stat" 2>/dev/null) || return 1
  [ "$st" != Z ] && [ "$st" != X ]
}
pidof_file() { [ -s "$1" ] && tr -dc '0-9' <"$1" || true; }
daemon_alive() {  # daemon_alive NAME  (pid file $STATE/NAME.pid)
  alive "$(pidof_file "$STATE/$1.pid")" "$1"
}
munge_ok() { command -v munge >/dev/null && munge -n 2>/dev/null | unmunge >/dev/null 2>&1; }

# --- install --------------------------------------------------------------------------------------
cmd_install() {
  local missing=() p
  for p in "${PKGS[@]}"; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed' || missing+=("$p")
  done
  if [ ${#missing[@]} -eq 0 ]; then
    log "install: ${PKGS[*]} already installed ($(dpkg-query -W -f='${Version}' slurm-wlm))"
    return 0
  fi
  need_root
  command -v apt-get >/dev/null || die "apt-get not found; install ${missing[*]} by hand"
  log "install: apt-get update"
  DEBIAN_FRONTEND=noninteractive apt-get update -qq
  log "install: apt-get install --no-install-recommends ${missing[*]}"
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
  log "install: done ($(dpkg-query -W -f='${Version}' slurm-wlm))"
}

# --- config ---------------------------------------------------------------------------------------
detect_cpus() { echo "${SLURM_CI_CPUS:-$(nproc)}"; }
detect_mem() {
  if [ -n "${SLURM_CI_MEM_MB:-}" ]; then echo "$SLURM_CI_MEM_MB"; return; fi
  local total head
  total=$(free -m | awk '/^Mem:/ {print $2}')
  head=$(( total / 5 )); [ "$head" -lt 1024 ] && head=1024
  local m=$(( total - head )); [ "$m" -lt 512 ] && m=512
  echo "$m"
}
gpu_files() {  # comma-separated device files for $GPUS gpus
  local n=$1 files=() i
  if [ -e /dev/nvidia0 ]; then
    for ((i = 0; i < n; i++)); do files+=("/dev/nvidia$i"); done
  else
    # Character devices that exist everywhere. Regular files are rejected by slurmd and a
    # count without File= makes the node INVAL ("count reported lower than configured").
    local fake=(/dev/null /dev/zero /dev/full /dev/random /dev/urandom)
    for ((i = 0; i < n; i++)); do files+=("${fake[$i]}"); done
  fi
  (IFS=,; echo "${files[*]}")
}

write_conf() {
  local cpus mem gres_node="" gres_types=""
  cpus=$(detect_cpus); mem=$(detect_mem)
  [[ "$GPUS" =~ ^[0-5]$ ]] || die "SLURM_CI_GPUS must be 0..5 (got '$GPUS')"
  [[ "$cpus" =~ ^[1-9][0-9]*$ ]] || die "SLURM_CI_CPUS must be a positive integer (got '$cpus')"
  [[ "$mem" =~ ^[1-9][0-9]*$ ]] || die "SLURM_CI_MEM_MB must be a positive integer (got '$mem')"
  [[ "$PARTITION" =~ ^[A-Za-z0-9_-]+$ ]] || die "SLURM_CI_PARTITION must be a plain name (got '$PARTITION')"
  if [ -f "$CONF_DIR/slurm.conf" ] && ! grep -q '^# Written by scripts/slurm-ci.sh' "$CONF_DIR/slurm.conf" \
     && [ "${SLURM_CI_FORCE:-0}" != 1 ]; then
    die "$CONF_DIR/slurm.conf exists and was not written by this script (a real cluster?); refusing to overwrite it (SLURM_CI_FORCE=1 to override)"
  fi
  if [ -e /dev/nvidia0 ]; then
    local i; for ((i = 0; i < GPUS; i++)); do
      [ -e "/dev/nvidia$i" ] || die "SLURM_CI_GPUS=$GPUS but /dev/nvidia$i does not exist"
    done
  fi
  if [ "$GPUS" -gt 0 ]; then gres_types="GresTypes=gpu"; gres_node=" Gres=gpu:$GPUS"; fi
  mkdir -p "$CONF_DIR" "$STATE/spool/ctld" "$STATE/spool/d" "$STATE/log"
  cat >"$CONF_DIR/slurm.conf" <<EOF
# Written by scripts/slurm-ci.sh -- single-node CI cluster. State under $STATE.
ClusterName=ci
SlurmctldHost=$NODE(127.0.0.1)
SlurmUser=root
SlurmdUser=root
AuthType=auth/munge
CredType=cred/munge
MpiDefault=none
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
JobAcctGatherType=jobacct_gather/none
JobCompType=jobcomp/none
AccountingStorageType=accounting_storage/none
SchedulerType=sched/backfill
SelectType=select/cons_tres
SelectTypeParameters=CR_Core_Memory
SlurmdParameters=config_overrides
ReturnToService=2
# Reject at submission (instead of pending forever with Reason=PartitionConfig) jobs that ask
# for more CPUs/memory/GPUs than the node declares.
EnforcePartLimits=ALL
# Finished jobs stay visible to squeue this long; Snakemake's squeue status mode needs >= 3x its
# init interval and >= 180 s.
MinJobAge=300
SlurmctldPidFile=$STATE/slurmctld.pid
SlurmdPidFile=$STATE/slurmd.pid
StateSaveLocation=$STATE/spool/ctld
SlurmdSpoolDir=$STATE/spool/d
SlurmctldLogFile=$STATE/log/slurmctld.log
SlurmdLogFile=$STATE/log/slurmd.log
$gres_types
NodeName=$NODE NodeAddr=127.0.0.1 CPUs=$cpus RealMemory=$mem$gres_node State=UNKNOWN
# Jobs without --mem would otherwise get the whole node's memory and run one at a time.
PartitionName=$PARTITION Nodes=ALL Default=YES MaxTime=INFINITE State=UP DefMemPerCPU=1000
EOF
  {
    echo "# Written by scripts/slurm-ci.sh"
    echo "AutoDetect=off"
    [ "$GPUS" -gt 0 ] && echo "NodeName=$NODE Name=gpu File=$(gpu_files "$GPUS")"
  } >"$CONF_DIR/gres.conf"
  log "start: wrote $CONF_DIR/slurm.conf (CPUs=$cpus RealMemory=$mem partition=$PARTITION gpu=$GPUS) and gres.conf"
}

# --- start/stop -----------------------------------------------------------------------------------
print_logs() {
  local f
  for f in "$STATE/log/slurmctld.log" "$STATE/log/slurmd.log" "$STATE/log/munged.log"; do
    [ -f "$f" ] && { echo "----- tail -n 40 $f" >&2; tail -n 40 "$f" >&2; }
  done
  if command -v sinfo >/dev/null; then
    echo "----- sinfo -N -l; sinfo -R" >&2
    timeout 5 sinfo -N -l >&2 2>&1 || true
    timeout 5 sinfo -R >&2 2>&1 || true
  fi
}
fail_start() { log "ERROR: $*"; print_logs; exit 1; }

node_state() { timeout 5 sinfo -h -N -n "$NODE" -o '%T' 2>/dev/null | head -1 || true; }
node_usable() { [[ "$(node_state)" =~ ^(idle|mixed|allocated|completing)$ ]]; }

start_munge() {
  if munge_ok; then log "start: munged already answering"; return; fi
  [ -s /etc/munge/munge.key ] || die "/etc/munge/munge.key missing (reinstall munge)"
  install -d -o munge -g munge -m 0755 /run/munge
  install -d -o munge -g munge -m 0700 /var/log/munge /var/lib/munge 2>/dev/null || true
  log "start: munged (as user munge)"
  # munged refuses to run as root with its log dir owned by munge; it forks by itself.
  runuser -u munge -- /usr/sbin/munged --force >"$STATE/log/munged.log" 2>&1 \
    || fail_start "munged failed to start"
  local i
  for i in $(seq 50); do munge_ok && break; sleep 0.1; done
  munge_ok || fail_start "munged does not answer (munge -n | unmunge)"
  # Record its pid so that `stop` only ever kills a munged this script started.
  pidof_file /run/munge/munged.pid >"$STATE/munged.pid"
}

cmd_start() {
  need_root
  cmd_install
  mkdir -p "$STATE/log"
  if daemon_alive slurmctld && daemon_alive slurmd && node_usable; then
    log "start: already running (node $NODE $(node_state)); nothing to do"
    return 0
  fi
  local t0=$SECONDS
  if ! daemon_alive slurmctld && ! daemon_alive slurmd; then
    write_conf
  else
    log "start: some daemons are up; keeping the existing /etc/slurm/slurm.conf"
  fi
  start_munge
  if ! daemon_alive slurmctld; then
    log "start: slurmctld -c (clean state)"
    slurmctld -c || fail_start "slurmctld failed to start"
  fi
  if ! daemon_alive slurmd; then
    log "start: slurmd -N $NODE"
    slurmd -N "$NODE" || fail_start "slurmd failed to start"
  fi
  log "start: waiting up to ${TIMEOUT}s for node $NODE to be idle (SLURM_CI_TIMEOUT)"
  local deadline=$(( SECONDS + TIMEOUT )) st=""
  while :; do
    st=$(node_state)
    [[ "$st" =~ ^(idle|mixed|allocated|completing)$ ]] && break
    daemon_alive slurmctld || fail_start "slurmctld died"
    daemon_alive slurmd || fail_start "slurmd died"
    if [[ "$st" =~ drain|inval|down ]] && [ $(( SECONDS - t0 )) -ge 10 ]; then
      fail_start "node $NODE is '$st' (see sinfo -R and the logs below)"
    fi
    [ "$SECONDS" -lt "$deadline" ] || fail_start "node $NODE not idle after ${TIMEOUT}s (state '${st:-?}')"
    sleep 0.2
  done
  log "start: node $NODE $st after $(( SECONDS - t0 ))s"
  timeout 5 sinfo -N -o '%N %P %T %c %m %G' >&2 || true
}

stop_pid() {  # stop_pid NAME
  local name=$1 pid i
  pid=$(pidof_file "$STATE/$name.pid")
  if ! alive "$pid" "$name"; then rm -f "$STATE/$name.pid"; return; fi
  log "stop: kill $name ($pid)"
  kill "$pid" 2>/dev/null || true
  for i in $(seq 150); do alive "$pid" "$name" || break; sleep 0.1; done
  if alive "$pid" "$name"; then log "stop: $name did not exit in 15s; kill -9"; kill -9 "$pid" 2>/dev/null || true; fi
  rm -f "$STATE/$name.pid"
}

cmd_stop() {
  need_root
  if daemon_alive slurmctld && command -v scancel >/dev/null; then
    log "stop: scancel all jobs of $(id -un)"
    timeout 10 scancel -u "$(id -un)" 2>/dev/null || true
  fi
  stop_pid slurmd
  stop_pid slurmctld
  stop_pid munged
  # Move our config aside: with slurm.conf present but no slurmctld, every `scontrol` blocks ~9 s,
  # and the slurm executor plugin runs `scontrol show config` when Snakemake loads it, so every
  # snakemake call (even a local one) would take ~9 s longer. `start` writes it again.
  local f
  for f in slurm.conf gres.conf; do
    if [ -f "$CONF_DIR/$f" ] && grep -q '^# Written by scripts/slurm-ci.sh' "$CONF_DIR/$f"; then
      mkdir -p "$STATE"; mv -f "$CONF_DIR/$f" "$STATE/$f.stopped"
      log "stop: moved $CONF_DIR/$f to $STATE/$f.stopped"
    fi
  done
  log "stop: done"
}

cmd_status() {
  local d
  for d in munged slurmctld slurmd; do
    if daemon_alive "$d"; then echo "$d: running (pid $(pidof_file "$STATE/$d.pid"))"
    elif [ "$d" = munged ] && munge_ok; then echo "munged: running (not started by this script)"
    else echo "$d: not running"; fi
  done
  if daemon_alive slurmctld; then
    echo "--- sinfo"; timeout 5 sinfo -N -o '%N %P %T %c %m %G' || true
    echo "--- squeue"; timeout 5 squeue -o '%i %j %T %M %l %C %m %b %R' || true
  fi
  daemon_alive slurmctld && daemon_alive slurmd && node_usable
}

case "${1:-}" in
  install) cmd_install ;;
  start) cmd_start ;;
  stop) cmd_stop ;;
  restart) cmd_stop; cmd_start ;;
  status) cmd_status ;;
  *) echo "usage: $0 {install|start|stop|restart|status}" >&2; exit 2 ;;
esac
