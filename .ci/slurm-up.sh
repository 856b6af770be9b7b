#!/usr/bin/env bash
# Bring up a real single-node SLURM cluster on loopback, for CI tests of the SLURM profile.
#
# Debian packages (slurmctld, slurmd, slurm-client, munge), no systemd, no accounting storage.
# Recipe and pitfalls: docs/ci.md. Needs root (writes /etc/slurm/slurm.conf).
#
#   .ci/slurm-up.sh            # installs packages if missing, starts munged, slurmctld, slurmd
#   .ci/slurm-down.sh          # stops exactly the daemons this script started (by pid file)
#
# State (config copy, pid files, logs, spool) lives in $HERO_SLURM_DIR (default
# /tmp/hero-bench-slurm). Idempotent: if the cluster from a previous call is still up and idle,
# it is reused. Every wait is bounded; on failure the daemon logs are printed and the exit code is 1.
set -euo pipefail

SLURM_DIR=${HERO_SLURM_DIR:-/tmp/hero-bench-slurm}
CONF=/etc/slurm/slurm.conf
WAIT_S=${HERO_SLURM_WAIT_S:-60}

log() { printf '[slurm-up] %s\n' "$*" >&2; }
die() {
    log "ERROR: $*"
    for f in "$SLURM_DIR"/log/*.log; do
        [ -f "$f" ] || continue
        log "---- last lines of $f"
        tail -n 20 "$f" >&2 || true
    done
    exit 1
}

# wait_for SECONDS DESCRIPTION COMMAND...: poll COMMAND every 0.5 s until it succeeds
wait_for() {
    local secs=$1 what=$2
    shift 2
    local deadline=$((SECONDS + secs))
    until "$@" >/dev/null 2>&1; do
        [ "$SECONDS" -lt "$deadline" ] || die "timed out after ${secs}s waiting for $what"
        sleep 0.5
    done
}

alive() { [ -f "$1" ] && kill -0 "$(cat "$1")" 2>/dev/null; }

[ "$(id -u)" -eq 0 ] || die "must run as root (writes $CONF and starts slurmd); see docs/ci.md"

# ---- 1. packages -----------------------------------------------------------------------------
if ! command -v slurmctld >/dev/null || ! command -v slurmd >/dev/null \
    || ! command -v sbatch >/dev/null || ! command -v munged >/dev/null; then
    log "installing slurmctld slurmd slurm-client munge (apt-get)"
    export DEBIAN_FRONTEND=noninteractive
    timeout -k 10 600 apt-get update -qq || die "apt-get update failed"
    timeout -k 10 900 apt-get install -y -qq --no-install-recommends \
        slurmctld slurmd slurm-client munge >/dev/null || die "apt-get install failed"
fi

mkdir -p "$SLURM_DIR"/{state,spool,log,run}
chmod 755 "$SLURM_DIR"

# ---- 2. munge --------------------------------------------------------------------------------
if ! timeout -k 2 10 bash -c 'munge -n | unmunge' >/dev/null 2>&1; then
    [ -f /etc/munge/munge.key ] || {
        log "creating /etc/munge/munge.key"
        timeout -k 2 30 mungekey --create --keyfile=/etc/munge/munge.key 2>/dev/null \
            || dd if=/dev/urandom of=/etc/munge/munge.key bs=1 count=128 status=none
    }
    chown munge:munge /etc/munge/munge.key
    chmod 400 /etc/munge/munge.key
    mkdir -p /run/munge /var/lib/munge /var/log/munge
    chown munge:munge /run/munge /var/lib/munge /var/log/munge
    chmod 755 /run/munge
    log "starting munged"
    runuser -u munge -- munged --pid-file=/run/munge/munged.pid || die "munged failed to start"
    cp /run/munge/munged.pid "$SLURM_DIR/run/munged.pid"   # started by us: slurm-down stops it
    wait_for 15 "munge credentials" bash -c 'munge -n | unmunge'
fi

# ---- 3. slurm.conf ---------------------------------------------------------------------------
NODE=$(hostname -s)
CPUS=$(nproc)
MEM_MB=$(awk '/^MemTotal:/ {printf "%d", $2 / 1024 * 0.85}' /proc/meminfo)
# squeue-based job status needs finished jobs to stay listed: the plugin falls back to sacct
# (which hangs without accounting storage) when MinJobAge < 3 x its status-check interval
MIN_JOB_AGE=${HERO_SLURM_MIN_JOB_AGE:-300}
cat >"$SLURM_DIR/slurm.conf.new" <<EOF
# written by hero-bench .ci/slurm-up.sh: single-node loopback cluster for CI
ClusterName=ci
SlurmctldHost=localhost
SlurmUser=root
SlurmdUser=root
AuthType=auth/munge
CredType=cred/munge
StateSaveLocation=$SLURM_DIR/state
SlurmdSpoolDir=$SLURM_DIR/spool
SlurmctldPidFile=$SLURM_DIR/run/slurmctld.pid
SlurmdPidFile=$SLURM_DIR/run/slurmd.pid
SlurmctldLogFile=$SLURM_DIR/log/slurmctld.log
SlurmdLogFile=$SLURM_DIR/log/slurmd.log
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
JobAcctGatherType=jobacct_gather/none
SelectType=select/cons_tres
SelectTypeParameters=CR_Core_Memory
AccountingStorageType=accounting_storage/none
MinJobAge=$MIN_JOB_AGE
ReturnToService=2
MpiDefault=none
SlurmctldTimeout=30
SlurmdTimeout=30
NodeName=$NODE NodeAddr=127.0.0.1 CPUs=$CPUS RealMemory=$MEM_MB State=UNKNOWN
PartitionName=debug Nodes=$NODE Default=YES MaxTime=INFINITE State=UP
EOF

# ---- 4. reuse a running cluster of ours with the same configuration --------------------------
if alive "$SLURM_DIR/run/slurmctld.pid" && alive "$SLURM_DIR/run/slurmd.pid" \
    && cmp -s "$SLURM_DIR/slurm.conf.new" "$CONF" \
    && timeout -k 2 10 sinfo -h -o %t 2>/dev/null | grep -Eq '^(idle|mix|alloc)'; then
    rm -f "$SLURM_DIR/slurm.conf.new"
    log "cluster already up ($SLURM_DIR), reusing it"
    exit 0
fi
mv "$SLURM_DIR/slurm.conf.new" "$SLURM_DIR/slurm.conf"
mkdir -p /etc/slurm
if [ -f "$CONF" ] && [ ! -f "$SLURM_DIR/slurm.conf.orig" ] && ! grep -q "hero-bench .ci/slurm-up.sh" "$CONF"; then
    cp "$CONF" "$SLURM_DIR/slurm.conf.orig"   # someone else's config: slurm-down restores it
fi
cp "$SLURM_DIR/slurm.conf" "$CONF"

# ---- 5. daemons ------------------------------------------------------------------------------
# leftovers of an earlier run of ours (stale pid files) are stopped first
for d in slurmd slurmctld; do
    if alive "$SLURM_DIR/run/$d.pid"; then
        log "stopping stale $d (pid $(cat "$SLURM_DIR/run/$d.pid"))"
        pid=$(cat "$SLURM_DIR/run/$d.pid")
        kill "$pid" || true
        for _ in $(seq 1 40); do kill -0 "$pid" 2>/dev/null || break; sleep 0.25; done
        kill -0 "$pid" 2>/dev/null && { kill -9 "$pid" || true; }
    fi
done

log "starting slurmctld (node $NODE, $CPUS CPUs, ${MEM_MB} MB)"
timeout -k 5 30 slurmctld -i || die "slurmctld failed to start"
wait_for "$WAIT_S" "slurmctld to answer (scontrol ping)" bash -c 'scontrol ping | grep -q UP'
log "starting slurmd"
timeout -k 5 30 slurmd || die "slurmd failed to start"
wait_for "$WAIT_S" "node $NODE to become idle" bash -c 'sinfo -h -o %t | grep -Eq "^idle"'
log "cluster up: $(sinfo -h -o '%P %a %D %t %C' | tr '\n' ' ')"
