#!/usr/bin/env bash
# Installs one of Debian's server packages whose own system service we do not want, idempotently:
#
#   bash scripts/install-service-package.sh PACKAGE PROGRAM...
#
# When any PROGRAM (a name on PATH, or an absolute path) is already there, this does nothing and
# takes ~0 s. Otherwise it runs `apt-get install PACKAGE` (with `apt-get update` first only when
# the package lists do not know it yet). The tests and `make cluster` run their own server on a
# free port in a temp directory, so the system service named PACKAGE that installing may start
# is stopped and disabled again; a service that was already running is left alone (quietly
# skipped where systemctl/service do not exist). Runs as root, or through sudo when it exists.
# With NO_RECOMMENDS=1, the package's Recommends are not installed (prometheus recommends
# prometheus-node-exporter, a second service this script would not stop).
# Used by install-redis.sh, install-nginx.sh, install-promtool.sh, install-systemd-analyze.sh,
# install-proxy-deps.sh and install-zbar.sh (a package without a service: nothing to stop).
set -euo pipefail

PACKAGE="$1"
shift
log() { echo "$PACKAGE-install: $*" >&2; }

as_root() {
    if [[ "$(id -u)" == 0 ]]; then "$@";
    elif command -v sudo >/dev/null 2>&1; then sudo "$@";
    else log "need root to run: $*"; exit 1; fi
}

present() {
    local p
    for p in "$@"; do
        if [[ "$p" == /* ]]; then [[ -x "$p" ]] && return 0;
        else command -v "$p" >/dev/null 2>&1 && return 0; fi
    done
    return 1
}

present "$@" && exit 0

# Whether the service ran before: only a service that installing started is stopped again.
service_active() {
    if command -v systemctl >/dev/null 2>&1; then
        systemctl is-active --quiet "$PACKAGE" 2>/dev/null
    elif command -v service >/dev/null 2>&1; then
        service "$PACKAGE" status >/dev/null 2>&1
    else
        return 1
    fi
}
was_active=no
service_active && was_active=yes

if ! apt-cache policy "$PACKAGE" 2>/dev/null | grep -q 'Candidate: [0-9]'; then
    as_root apt-get update -qq
fi
log "apt-get install $PACKAGE"
extra=()
[[ "${NO_RECOMMENDS:-0}" == 1 ]] && extra+=(--no-install-recommends)
as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${extra[@]}" "$PACKAGE" >/dev/null

if [[ "$was_active" == no ]] && service_active; then
    log "stopping the $PACKAGE service the package started (we run our own)"
    if command -v systemctl >/dev/null 2>&1; then
        as_root systemctl stop "$PACKAGE" || true
        as_root systemctl disable "$PACKAGE" >/dev/null 2>&1 || true
    else
        as_root service "$PACKAGE" stop || true
    fi
fi
present "$@" || { log "$PACKAGE is still missing"; exit 1; }
