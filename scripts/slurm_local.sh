#!/usr/bin/env bash
# slurm_local.sh start|stop DIR - a private single-node SLURM cluster (Debian's slurm-wlm
# 22.05 and munge) for the tests: munged, slurmctld and slurmd run as root with every
# file in DIR (key, sockets, state, spool, logs) and their own ports, so nothing of the
# machine's own configuration is used or changed. After `start`, point the client tools
# at it with: export SLURM_CONF=DIR/slurm.conf. `stop` ends the daemons by their pids.
set -euo pipefail
cmd=${1:?start|stop}
dir=$(mkdir -p "${2:?DIR}" && cd "$2" && pwd)

free_port() { /usr/bin/python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }

start() {
    [ "$(id -u)" = 0 ] || { echo "slurm_local: needs root" >&2; exit 77; }
    for b in munged slurmctld slurmd sbatch; do
        command -v "$b" >/dev/null || { echo "slurm_local: $b missing (slurm-wlm, munge)" >&2; exit 77; }
    done
    mkdir -p "$dir/state" "$dir/spool" "$dir/log"
    head -c 1024 /dev/urandom >"$dir/munge.key"
    chmod 400 "$dir/munge.key"
    munged --key-file="$dir/munge.key" --socket="$dir/munge.sock" \
        --pid-file="$dir/munged.pid" --log-file="$dir/log/munged.log" --seed-file="$dir/munge.seed" \
        --force
    local mem cpus
    mem=$(awk '/MemTotal/ { print int($2 / 1024 * 0.9) }' /proc/meminfo)
    cpus=$(nproc)
    cat >"$dir/slurm.conf" <<CONF
ClusterName=mftest
SlurmctldHost=localhost
SlurmctldPort=$(free_port)
SlurmdPort=$(free_port)
SlurmUser=root
SlurmdUser=root
AuthType=auth/munge
CredType=cred/munge
AuthInfo=socket=$dir/munge.sock
StateSaveLocation=$dir/state
SlurmdSpoolDir=$dir/spool
SlurmctldPidFile=$dir/slurmctld.pid
SlurmdPidFile=$dir/slurmd.pid
SlurmctldLogFile=$dir/log/slurmctld.log
SlurmdLogFile=$dir/log/slurmd.log
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
SwitchType=switch/none
MpiDefault=none
SelectType=select/cons_tres
SelectTypeParameters=CR_CPU_Memory
AccountingStorageType=accounting_storage/none
JobCompType=jobcomp/none
JobAcctGatherType=jobacct_gather/none
ReturnToService=2
MinJobAge=600
SchedulerType=sched/backfill
SlurmctldTimeout=30
SlurmdTimeout=30
InactiveLimit=0
KillWait=5
NodeName=localhost CPUs=$cpus RealMemory=$mem State=UNKNOWN
PartitionName=debug Nodes=localhost Default=YES MaxTime=INFINITE State=UP
CONF
    export SLURM_CONF="$dir/slurm.conf"
    slurmctld -i -f "$dir/slurm.conf"
    slurmd -f "$dir/slurm.conf"
    for _ in $(seq 60); do # until the node takes jobs
        state=$(sinfo -h -o '%T' 2>/dev/null | head -1)
        case "$state" in idle*|mixed*|alloc*) return 0 ;; esac
        sleep 0.5
    done
    echo "slurm_local: the node did not come up; see $dir/log" >&2
    tail -5 "$dir/log/"*.log >&2
    stop
    exit 1
}

stop() {
    for p in slurmd slurmctld munged; do
        [ -f "$dir/$p.pid" ] && kill "$(cat "$dir/$p.pid")" 2>/dev/null || true
    done
    sleep 1
    for p in slurmd slurmctld munged; do
        [ -f "$dir/$p.pid" ] && kill -9 "$(cat "$dir/$p.pid")" 2>/dev/null || true
        rm -f "$dir/$p.pid"
    done
}

"$cmd"
