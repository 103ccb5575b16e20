#!/usr/bin/env bash
# A single-node SLURM cluster on this machine, for the `slurm` tests and for trying the
# SLURM launcher: munged, slurmctld and slurmd, all with their state under one folder.
#
#   bash tools/slurm/local_cluster.sh start    # prints the export line to use it
#   bash tools/slurm/local_cluster.sh status
#   bash tools/slurm/local_cluster.sh stop
#
# Needs root and Debian's packages: apt-get install -y slurm-wlm munge.
# Nothing system-wide is touched: a private munge key and socket, a slurm.conf with
# free ports, state, spool, logs and pid files, all under $SEMPT_SLURM_DIR (default:
# ${TMPDIR:-/tmp}/sempt-slurm). Clients find it through SLURM_CONF=$SEMPT_SLURM_DIR/slurm.conf.
# No accounting database: `sacct` does not work; the benchmark runner uses squeue.
# `stop` ends only the daemons this script started, by the pids in their pid files.
set -euo pipefail

DIR="${SEMPT_SLURM_DIR:-${TMPDIR:-/tmp}/sempt-slurm}"
CONF="$DIR/slurm.conf"
NODE="$(hostname -s)"
WAIT_S="${SEMPT_SLURM_WAIT_S:-60}"

die() {
    echo "local_cluster: $*" >&2
    exit 1
}

need() {
    command -v "$1" >/dev/null 2>&1 || die "$1 not found: install SLURM and munge first (apt-get install -y slurm-wlm munge)"
}

free_port() {
    python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1]); s.close()'
}

pid_alive() {  # pid_alive PIDFILE
    [[ -f "$1" ]] && kill -0 "$(cat "$1")" 2>/dev/null
}

write_config() {
    local ctld_port slurmd_port cpus mem_mb
    ctld_port="${SEMPT_SLURM_CTLD_PORT:-$(free_port)}"
    slurmd_port="${SEMPT_SLURM_SLURMD_PORT:-$(free_port)}"
    cpus="$(nproc)"
    mem_mb="$(awk '/MemTotal/ {print int($2 / 1024 * 0.9)}' /proc/meminfo)"
    cat >"$CONF" <<EOF
# Written by tools/slurm/local_cluster.sh: one node, this machine.
ClusterName=sempt-local
SlurmctldHost=${NODE}
SlurmctldPort=${ctld_port}
SlurmdPort=${slurmd_port}
SlurmUser=root
SlurmdUser=root
AuthType=auth/munge
CredType=cred/munge
AuthInfo=socket=${DIR}/munge/munge.socket
StateSaveLocation=${DIR}/state
SlurmdSpoolDir=${DIR}/spool/%n
SlurmctldPidFile=${DIR}/run/slurmctld.pid
SlurmdPidFile=${DIR}/run/slurmd.pid
SlurmctldLogFile=${DIR}/log/slurmctld.log
SlurmdLogFile=${DIR}/log/slurmd.log
# Containers have no cgroup delegation: track processes by parentage, bind nothing.
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
SwitchType=switch/none
MpiDefault=none
JobAcctGatherType=jobacct_gather/none
AccountingStorageType=accounting_storage/none
JobCompType=jobcomp/none
SelectType=select/cons_tres
SelectTypeParameters=CR_CPU
ReturnToService=2
# Requeued jobs (preemption, time limit) may run again at once.
JobRequeue=1
SchedulerType=sched/backfill
SchedulerParameters=sched_interval=2
KillWait=10
MinJobAge=300
InactiveLimit=0
SlurmctldTimeout=30
SlurmdTimeout=30
NodeName=${NODE} CPUs=${cpus} RealMemory=${mem_mb} State=UNKNOWN
PartitionName=debug Nodes=${NODE} Default=YES MaxTime=INFINITE State=UP
EOF
}

start() {
    [[ "$(id -u)" == 0 ]] || die "needs root (the daemons run as root here)"
    for tool in munged slurmctld slurmd sinfo; do need "$tool"; done
    if pid_alive "$DIR/run/slurmctld.pid"; then
        echo "local_cluster: already running ($CONF)"
        echo "export SLURM_CONF=$CONF"
        return 0
    fi
    rm -rf "$DIR"
    mkdir -p "$DIR"/{munge,state,spool,run,log}
    chmod 755 "$DIR/munge"
    # A private key: nothing of the machine's own munge is used or changed.
    dd if=/dev/urandom of="$DIR/munge/munge.key" bs=1 count=1024 status=none
    chmod 400 "$DIR/munge/munge.key"
    munged --force --key-file="$DIR/munge/munge.key" --socket="$DIR/munge/munge.socket" \
        --pid-file="$DIR/run/munged.pid" --log-file="$DIR/log/munged.log" --seed-file="$DIR/munge/munge.seed"
    write_config
    export SLURM_CONF="$CONF"
    slurmctld -f "$CONF"
    slurmd -f "$CONF"
    local waited=0
    until sinfo -h -N -o "%T" 2>/dev/null | grep -qE '^idle|^mixed'; do
        if ((waited >= WAIT_S)); then
            echo "local_cluster: the node did not become idle within ${WAIT_S} s; logs:" >&2
            tail -n 20 "$DIR"/log/*.log >&2 || true
            stop
            exit 1
        fi
        sleep 1
        waited=$((waited + 1))
    done
    echo "local_cluster: up after ${waited} s (node ${NODE}, $(nproc) CPUs, partition debug)"
    echo "export SLURM_CONF=$CONF"
}

stop_daemon() {  # stop_daemon NAME PIDFILE
    local pidfile=$2 pid
    pid_alive "$pidfile" || return 0
    pid="$(cat "$pidfile")"
    kill "$pid" 2>/dev/null || true
    for _ in $(seq 1 30); do
        kill -0 "$pid" 2>/dev/null || return 0
        sleep 0.5
    done
    echo "local_cluster: $1 (pid $pid) did not stop on SIGTERM; killing it" >&2
    kill -9 "$pid" 2>/dev/null || true
}

stop() {
    if [[ -f "$CONF" ]] && pid_alive "$DIR/run/slurmctld.pid"; then
        # Jobs first, so that their processes end before the node daemon does.
        SLURM_CONF="$CONF" scancel --user="$(id -un)" 2>/dev/null || true
    fi
    stop_daemon slurmd "$DIR/run/slurmd.pid"
    stop_daemon slurmctld "$DIR/run/slurmctld.pid"
    stop_daemon munged "$DIR/run/munged.pid"
    echo "local_cluster: stopped ($DIR kept for its logs)"
}

status() {
    if ! pid_alive "$DIR/run/slurmctld.pid"; then
        echo "local_cluster: not running ($DIR)"
        return 1
    fi
    SLURM_CONF="$CONF" sinfo
    SLURM_CONF="$CONF" squeue
    echo "export SLURM_CONF=$CONF"
}

case "${1:-}" in
    start) start ;;
    stop) stop ;;
    status) status ;;
    *) die "usage: bash $0 start|stop|status" ;;
esac
