#!/usr/bin/env bash
# Stop the loopback SLURM cluster that .ci/slurm-up.sh started: only the daemons whose pid files
# it wrote under $HERO_SLURM_DIR (default /tmp/hero-bench-slurm), never anything by name.
# Safe to call twice, or when nothing was started. Restores a pre-existing /etc/slurm/slurm.conf.
set -uo pipefail

SLURM_DIR=${HERO_SLURM_DIR:-/tmp/hero-bench-slurm}
log() { printf '[slurm-down] %s\n' "$*" >&2; }

stop_pidfile() {
    local name=$1 pidfile=$2 pid
    [ -f "$pidfile" ] || return 0
    pid=$(cat "$pidfile")
    if [ -n "$pid" ] && kill -0 "$pid" 2>/dev/null; then
        log "stopping $name (pid $pid)"
        kill "$pid" 2>/dev/null
        for _ in $(seq 1 40); do
            kill -0 "$pid" 2>/dev/null || break
            sleep 0.25
        done
        if kill -0 "$pid" 2>/dev/null; then
            log "$name did not stop in 10 s: SIGKILL"
            kill -9 "$pid" 2>/dev/null
        fi
    fi
    rm -f "$pidfile"
}

# cancel what is still queued, so slurmd has no job steps left behind
if [ -f "$SLURM_DIR/run/slurmctld.pid" ] && command -v scancel >/dev/null; then
    timeout -k 2 10 scancel --partition=debug >/dev/null 2>&1 || true
fi
stop_pidfile slurmd "$SLURM_DIR/run/slurmd.pid"
stop_pidfile slurmctld "$SLURM_DIR/run/slurmctld.pid"
stop_pidfile munged "$SLURM_DIR/run/munged.pid"

if [ -f "$SLURM_DIR/slurm.conf.orig" ]; then
    cp "$SLURM_DIR/slurm.conf.orig" /etc/slurm/slurm.conf && rm -f "$SLURM_DIR/slurm.conf.orig"
fi
exit 0
