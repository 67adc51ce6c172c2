#!/usr/bin/env bash
# Bring up a one-node Slurm cluster (munge + slurmctld + slurmd) on this machine, for
# tests/test_slurm.py. Idempotent: safe to run again while Slurm is already up.
# Needs root on Debian/Ubuntu. Environment knobs:
#   SLURM_UP_TIMEOUT   seconds to wait for the node to become idle (default 60)
#   SLURM_PARTITION    partition name (default "debug")
#   SLURM_UP_PIDFILE   when set, each daemon this script starts is appended to it as "<name> <pid>";
#                      daemons that were already running are not recorded
#
#   bash .ci/slurm_up.sh --down FILE
# stops exactly the daemons recorded in FILE (newest first; SIGTERM, SIGKILL after 10 s), skipping a
# pid that no longer runs the recorded program. .ci/run does this when it exits.
set -euo pipefail

timeout_s="${SLURM_UP_TIMEOUT:-60}"
partition="${SLURM_PARTITION:-debug}"

log() { echo "[slurm_up] $*"; }

# "<name> <pid>" -> true while that pid still runs the program <name> (a zombie has stopped)
runs_as() {
    [ -n "$2" ] && [ "$(cat "/proc/$2/comm" 2>/dev/null || true)" = "$1" ] &&
        [ "$(awk '{print $3}' "/proc/$2/stat" 2>/dev/null || true)" != Z ]
}

stop_recorded() {
    local file="$1" name pid alive
    [ -s "$file" ] || return 0
    while read -r name pid; do
        if runs_as "$name" "$pid"; then
            log "stopping $name (pid $pid)"
            kill -TERM "$pid" 2>/dev/null || true
        fi
    done < <(tac "$file")
    for _ in $(seq 100); do
        alive=0
        while read -r name pid; do
            if runs_as "$name" "$pid"; then alive=1; fi
        done < "$file"
        [ "$alive" = 0 ] && return 0
        sleep 0.1
    done
    while read -r name pid; do
        if runs_as "$name" "$pid"; then
            log "$name (pid $pid) ignored SIGTERM for 10 s: SIGKILL"
            kill -KILL "$pid" 2>/dev/null || true
        fi
    done < "$file"
}

if [ "${1:-}" = "--down" ]; then
    [ -n "${2:-}" ] || { log "usage: bash .ci/slurm_up.sh --down PIDFILE"; exit 2; }
    stop_recorded "$2"
    exit 0
fi

# Append "<name> <pid>" of a daemon just started to $SLURM_UP_PIDFILE (pid from its pid file).
record_started() {
    local name="$1" pidfile="$2" pid=""
    [ -n "${SLURM_UP_PIDFILE:-}" ] || return 0
    for _ in $(seq 50); do
        pid="$(cat "$pidfile" 2>/dev/null || true)"
        if runs_as "$name" "$pid"; then break; fi
        pid=""
        sleep 0.1
    done
    [ -n "$pid" ] || pid="$(pgrep -n -x "$name" || true)"
    if [ -n "$pid" ]; then
        echo "$name $pid" >> "$SLURM_UP_PIDFILE"
    else
        log "could not find the pid of $name; it will not be stopped on exit"
    fi
}

if [ "$(id -u)" != 0 ]; then
    log "not root: cannot install or start Slurm; the Slurm tests will be skipped"
    exit 0
fi

# Already running and healthy? Nothing to do.
if command -v sinfo >/dev/null 2>&1 && sinfo -h -o '%t' 2>/dev/null | grep -qE '^(idle|mix|alloc)'; then
    log "Slurm is already up:"; sinfo
    exit 0
fi

if ! command -v slurmctld >/dev/null 2>&1 || ! command -v munged >/dev/null 2>&1 || ! command -v slurmd >/dev/null 2>&1; then
    log "installing slurm-wlm and munge"
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq
    apt-get install -y -qq slurm-wlm munge >/dev/null
fi

# --- munge -------------------------------------------------------------------------------------
mkdir -p /etc/munge /run/munge /var/lib/munge /var/log/munge
if [ ! -s /etc/munge/munge.key ]; then
    log "creating /etc/munge/munge.key"
    dd if=/dev/urandom bs=1 count=1024 of=/etc/munge/munge.key status=none
fi
munge_user=root
if id munge >/dev/null 2>&1; then munge_user=munge; fi
chown -R "$munge_user" /etc/munge /run/munge /var/lib/munge /var/log/munge
chmod 0700 /etc/munge /var/lib/munge /var/log/munge
chmod 0755 /run/munge
chmod 0400 /etc/munge/munge.key
if ! munge -n 2>/dev/null | unmunge >/dev/null 2>&1; then
    log "starting munged"
    if [ "$munge_user" = root ]; then munged --force; else runuser -u munge -- munged --force; fi
    record_started munged /run/munge/munged.pid
    for _ in $(seq 20); do munge -n 2>/dev/null | unmunge >/dev/null 2>&1 && break; sleep 0.5; done
fi
munge -n | unmunge >/dev/null || { log "munged is not answering"; exit 1; }

# --- slurm.conf --------------------------------------------------------------------------------
conf_dir=/etc/slurm
[ -d /etc/slurm-llnl ] && [ ! -d /etc/slurm ] && conf_dir=/etc/slurm-llnl
mkdir -p "$conf_dir" /var/spool/slurmctld /var/spool/slurmd /var/log/slurm /run/slurm
node="$(hostname -s)"
cpus="$(nproc)"
mem_mb="$(awk '/MemTotal/ {print int($2 / 1024 / 2)}' /proc/meminfo)"
[ "$mem_mb" -gt 4096 ] && mem_mb=4096

cat > "$conf_dir/slurm.conf" <<CONF
# Written by .ci/slurm_up.sh: a one-node test cluster.
ClusterName=restorelab
SlurmctldHost=${node}(127.0.0.1)
SlurmUser=root
SlurmdUser=root
AuthType=auth/munge
CryptoType=crypto/munge
MpiDefault=none
ProctrackType=proctrack/pgid
TaskPlugin=task/none
SwitchType=switch/none
ReturnToService=2
JobRequeue=1
SchedulerType=sched/backfill
SelectType=select/cons_tres
SelectTypeParameters=CR_Core
StateSaveLocation=/var/spool/slurmctld
SlurmdSpoolDir=/var/spool/slurmd
SlurmctldPidFile=/run/slurm/slurmctld.pid
SlurmdPidFile=/run/slurm/slurmd.pid
SlurmctldLogFile=/var/log/slurm/slurmctld.log
SlurmdLogFile=/var/log/slurm/slurmd.log
SlurmctldTimeout=30
SlurmdTimeout=30
InactiveLimit=0
MinJobAge=300
KillWait=10
Waittime=0
JobAcctGatherType=jobacct_gather/none
AccountingStorageType=accounting_storage/none
NodeName=${node} NodeAddr=127.0.0.1 CPUs=${cpus} RealMemory=${mem_mb} State=UNKNOWN
PartitionName=${partition} Nodes=${node} Default=YES MaxTime=INFINITE State=UP OverSubscribe=YES
CONF
# Slurm >= 23.02 autodetects cgroups (which fails in most containers) unless told not to;
# 22.05 (Debian 12) has no "disabled" plugin and needs no cgroup.conf with proctrack/pgid.
slurm_major="$(slurmd -V | awk '{split($2, v, "."); print v[1]}')"
if [ "${slurm_major:-0}" -ge 23 ] && [ ! -f "$conf_dir/cgroup.conf" ]; then
    echo "CgroupPlugin=disabled" > "$conf_dir/cgroup.conf"
fi

# --- daemons -----------------------------------------------------------------------------------
show_logs() { tail -n 20 /var/log/slurm/slurmctld.log /var/log/slurm/slurmd.log 2>/dev/null || true; }
if ! pgrep -x slurmctld >/dev/null; then
    log "starting slurmctld"
    slurmctld || { log "slurmctld failed to start"; show_logs; exit 1; }
    record_started slurmctld /run/slurm/slurmctld.pid
fi
if ! pgrep -x slurmd >/dev/null; then
    log "starting slurmd"
    slurmd || { log "slurmd failed to start"; show_logs; exit 1; }
    record_started slurmd /run/slurm/slurmd.pid
fi

# A node left DOWN/DRAIN by an earlier run comes back.
scontrol update NodeName="$node" State=RESUME >/dev/null 2>&1 || true

for _ in $(seq "$timeout_s"); do
    if sinfo -h -o '%t' 2>/dev/null | grep -qE '^(idle|mix|alloc)'; then
        log "Slurm is up:"; sinfo
        exit 0
    fi
    sleep 1
done
log "the node did not become idle within ${timeout_s}s; last lines of the logs:"
sinfo || true
show_logs
exit 1
