#!/usr/bin/env bash
# Installs Debian's redis-server for the Redis integration tests, idempotently: when
# `redis-server` is already on PATH this does nothing and takes ~0 s (`make redis-deps`, which
# `make unit` depends on). The tests start their own redis-server on a free port in a temp
# directory, so the system service the package may start is not wanted: if installing started
# one, it is stopped and disabled again (quietly skipped where systemctl/service do not exist).
# Runs as root (apt-get); uses sudo when not root and sudo exists.
set -euo pipefail

log() { echo "redis-install: $*" >&2; }

as_root() {
    if [[ "$(id -u)" == 0 ]]; then "$@";
    elif command -v sudo >/dev/null 2>&1; then sudo "$@";
    else log "need root to run: $*"; exit 1; fi
}

command -v redis-server >/dev/null 2>&1 && exit 0

# Whether the service ran before: only a service that installing started is stopped again.
service_active() {
    if command -v systemctl >/dev/null 2>&1; then
        systemctl is-active --quiet redis-server 2>/dev/null
    elif command -v service >/dev/null 2>&1; then
        service redis-server status >/dev/null 2>&1
    else
        return 1
    fi
}
was_active=no
service_active && was_active=yes

# `apt-get update` only when the package lists do not know the package yet.
if ! apt-cache policy redis-server 2>/dev/null | grep -q 'Candidate: [0-9]'; then
    as_root apt-get update -qq
fi
log "apt-get install redis-server"
as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq redis-server >/dev/null

if [[ "$was_active" == no ]] && service_active; then
    log "stopping the redis-server service the package started (the tests run their own)"
    if command -v systemctl >/dev/null 2>&1; then
        as_root systemctl stop redis-server || true
        as_root systemctl disable redis-server >/dev/null 2>&1 || true
    else
        as_root service redis-server stop || true
    fi
fi
command -v redis-server >/dev/null 2>&1 || { log "redis-server is still missing"; exit 1; }
