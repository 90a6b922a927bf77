#!/usr/bin/env bash
# Installs Debian's nginx for `make cluster` (and the cluster browser test), idempotently: when
# nginx is already installed this does nothing and takes ~0 s (`make cluster-deps`).
# scripts/cluster.sh runs its own nginx as a foreground process with its own config, prefix, pid
# and log files in a temp directory, so the system service the package starts on port 80 is not
# wanted: if installing started one, it is stopped and disabled again (quietly skipped where
# systemctl/service do not exist). A service that was already running is left alone.
# Runs as root (apt-get); uses sudo when not root and sudo exists.
set -euo pipefail

log() { echo "nginx-install: $*" >&2; }

as_root() {
    if [[ "$(id -u)" == 0 ]]; then "$@";
    elif command -v sudo >/dev/null 2>&1; then sudo "$@";
    else log "need root to run: $*"; exit 1; fi
}

# Debian puts nginx in /usr/sbin, which is not on every user's PATH: look there too.
have_nginx() { command -v nginx >/dev/null 2>&1 || [[ -x /usr/sbin/nginx ]]; }

have_nginx && exit 0

# Whether the service ran before: only a service that installing started is stopped again.
service_active() {
    if command -v systemctl >/dev/null 2>&1; then
        systemctl is-active --quiet nginx 2>/dev/null
    elif command -v service >/dev/null 2>&1; then
        service nginx status >/dev/null 2>&1
    else
        return 1
    fi
}
was_active=no
service_active && was_active=yes

# `apt-get update` only when the package lists do not know the package yet.
if ! apt-cache policy nginx 2>/dev/null | grep -q 'Candidate: [0-9]'; then
    as_root apt-get update -qq
fi
log "apt-get install nginx"
as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq nginx >/dev/null

if [[ "$was_active" == no ]] && service_active; then
    log "stopping the nginx service the package started (make cluster runs its own)"
    if command -v systemctl >/dev/null 2>&1; then
        as_root systemctl stop nginx || true
        as_root systemctl disable nginx >/dev/null 2>&1 || true
    else
        as_root service nginx stop || true
    fi
fi
have_nginx || { log "nginx is still missing"; exit 1; }
