#!/usr/bin/env bash
# A one-node Slurm cluster on this machine (controller and compute node in one), to try
# `python train.py -m hydra/launcher=slurm ...` on a laptop or a CI box. Debian/Ubuntu, as root.
#
#   sudo scripts/cluster/slurm_up.sh          # install if needed, configure, start; then sinfo
#   sudo scripts/cluster/slurm_up.sh --stop   # stop the daemons (packages and config stay)
#
# Idempotent: running it again restarts nothing that already answers. It writes
# /etc/slurm/slurm.conf (refusing to replace one it did not write), runs munged as `munge`
# and slurmctld/slurmd as root without systemd (containers have none), and uses no cgroups and
# no accounting database: submitit then logs "Bypassing sacct error", which is harmless.
set -euo pipefail

CONF=/etc/slurm/slurm.conf
MARK="# written by cnnsweep scripts/cluster/slurm_up.sh"
CTLD_PID=/run/slurmctld.pid
SLURMD_PID=/run/slurmd.pid
MUNGE_PID=/run/munge/munged.pid
LOGS=/var/log/slurm

die() { echo "slurm_up.sh: $*" >&2; exit 1; }

alive() { [ -s "$1" ] && kill -0 "$(cat "$1")" 2>/dev/null; }

stop_daemon() {  # by its pid file only: never another user's process of the same name
  local name=$1 pidfile=$2
  if alive "$pidfile"; then
    kill "$(cat "$pidfile")"
    for _ in $(seq 50); do alive "$pidfile" || break; sleep 0.2; done
    echo "stopped $name"
  fi
  rm -f "$pidfile"
}

[ "$(id -u)" = 0 ] || die "run as root (sudo $0): it installs packages and starts system daemons"

if [ "${1:-}" = "--stop" ]; then
  stop_daemon slurmd "$SLURMD_PID"
  stop_daemon slurmctld "$CTLD_PID"
  stop_daemon munged "$MUNGE_PID"
  exit 0
elif [ -n "${1:-}" ]; then
  die "unknown argument '$1' (only --stop)"
fi

# 1. packages
if ! command -v slurmctld >/dev/null || ! command -v slurmd >/dev/null \
  || ! command -v sbatch >/dev/null || ! command -v munged >/dev/null; then
  command -v apt-get >/dev/null || die "no apt-get: install slurmctld, slurmd, slurm-client and munge yourself"
  echo "installing slurmctld slurmd slurm-client munge ..."
  export DEBIAN_FRONTEND=noninteractive
  { apt-get install -y -qq slurmctld slurmd slurm-client munge >/dev/null 2>&1 \
    || { apt-get update -qq && apt-get install -y -qq slurmctld slurmd slurm-client munge >/dev/null; }; } \
    || die "could not install slurmctld slurmd slurm-client munge with apt-get (offline? no such packages?)"
fi

# 2. munge: the key, then the daemon as its own user
if [ ! -s /etc/munge/munge.key ]; then
  mkdir -p /etc/munge
  dd if=/dev/urandom of=/etc/munge/munge.key bs=1024 count=1 status=none
fi
chown munge:munge /etc/munge/munge.key && chmod 400 /etc/munge/munge.key
mkdir -p /run/munge /var/log/munge /var/lib/munge
chown munge:munge /run/munge /var/log/munge /var/lib/munge
if ! alive "$MUNGE_PID"; then
  runuser -u munge -- munged --force
  for _ in $(seq 50); do alive "$MUNGE_PID" && break; sleep 0.1; done
fi
munge -n | unmunge >/dev/null || die "munged does not answer (see /var/log/munge/munged.log)"

# 3. the config: this host is the controller and the only node
HOST=$(hostname -s)
CPUS=$(nproc)
MEM_MB=$(awk '/MemTotal/ {print int($2 / 1024)}' /proc/meminfo)
REAL_MB=$((MEM_MB * 9 / 10))  # below the machine's, or slurmd marks the node invalid
if [ -f "$CONF" ] && ! grep -qF "$MARK" "$CONF"; then
  die "$CONF exists and was not written by this script: not replacing it"
fi
mkdir -p /etc/slurm /var/spool/slurmctld /var/spool/slurmd "$LOGS"
NEW=$(cat <<CONFEOF
$MARK: a one-node cluster
ClusterName=cnnsweep
SlurmctldHost=$HOST
SlurmUser=root
AuthType=auth/munge
AuthInfo=cred_expire=10
MpiDefault=none
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
JobAcctGatherType=jobacct_gather/none
SelectType=select/cons_tres
SelectTypeParameters=CR_Core_Memory
SchedulerType=sched/backfill
SchedulerParameters=sched_interval=5,bf_interval=5
ReturnToService=2
StateSaveLocation=/var/spool/slurmctld
SlurmdSpoolDir=/var/spool/slurmd
SlurmctldPidFile=$CTLD_PID
SlurmdPidFile=$SLURMD_PID
SlurmctldLogFile=$LOGS/slurmctld.log
SlurmdLogFile=$LOGS/slurmd.log
NodeName=$HOST CPUs=$CPUS RealMemory=$REAL_MB State=UNKNOWN
PartitionName=debug Nodes=$HOST Default=YES MaxTime=INFINITE State=UP
CONFEOF
)
if [ ! -f "$CONF" ] || [ "$(cat "$CONF")" != "$NEW" ]; then
  printf '%s\n' "$NEW" >"$CONF"
  if alive "$CTLD_PID" || alive "$SLURMD_PID"; then  # new config: restart to read it
    stop_daemon slurmd "$SLURMD_PID"
    stop_daemon slurmctld "$CTLD_PID"
  fi
fi

# 4. the daemons
alive "$CTLD_PID" || slurmctld
for _ in $(seq 100); do scontrol ping >/dev/null 2>&1 && break; sleep 0.2; done
scontrol ping >/dev/null 2>&1 || die "slurmctld does not answer (see $LOGS/slurmctld.log)"
alive "$SLURMD_PID" || slurmd
for _ in $(seq 100); do
  state=$(sinfo -h -n "$HOST" -o %T 2>/dev/null | head -1)
  case "$state" in idle*|mixed*|allocated*) break ;; esac
  sleep 0.2
done
case "$state" in
  idle*|mixed*|allocated*) ;;
  down*|drain*) scontrol update nodename="$HOST" state=resume >/dev/null 2>&1 || true; sleep 1 ;;
  *) die "node $HOST is '$state', not idle (see $LOGS/slurmd.log)" ;;
esac
sinfo
echo "Slurm is up: $HOST, $CPUS CPUs, ${REAL_MB} MB. Try:"
echo "  .venv/bin/python train.py -m hydra/launcher=slurm hydra.launcher.cpus_per_task=1 hydra.launcher.mem_gb=1 lr=0.01,0.001"
