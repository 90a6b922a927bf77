#!/usr/bin/env bash
# `make cluster`: several livevote instances as one, on this machine, behind one URL.
#
#   scripts/cluster.sh                  start everything, print the URL, run until Ctrl-C/SIGTERM
#   scripts/cluster.sh --background DIR start everything with its files in DIR, wait until every
#                                       component answers, write DIR/url, DIR/ports, DIR/pids, return
#   scripts/cluster.sh --stop DIR       stop what --background DIR started (by pid), remove its files
#
# What runs (all on 127.0.0.1, all owned by this script by pid, nothing installed as a service):
#   - Debian's redis-server on a free port, with a durable configuration (AOF, appendfsync
#     always: a vote is acknowledged only once Redis has fsynced it) in the run directory;
#   - CLUSTER_INSTANCES (default 3) `livevote --redis redis://127.0.0.1:PORT` on free ports;
#   - Debian's nginx in the foreground with its own config/pid/logs/temp files in the run
#     directory (deploy/cluster/nginx.conf filled in): round-robin, no stickiness, WebSocket and
#     SSE proxied. CLUSTER_PORT picks its port (default: a free one).
# The livevote binary is LIVEVOTE_BIN, else $CARGO_TARGET_DIR/release/livevote, else
# target/release/livevote (`make cluster` builds it). Needs redis-server and nginx
# (`make cluster-deps`). Waits are on conditions (a port answering), bounded, never fixed sleeps.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
TEMPLATE="$ROOT/deploy/cluster/nginx.conf"
INSTANCES="${CLUSTER_INSTANCES:-3}"
# How long one component may take to answer after it was started (seconds).
READY_TIMEOUT="${CLUSTER_READY_TIMEOUT:-20}"
# How long a process may take to exit after SIGTERM before it gets SIGKILL (seconds).
STOP_TIMEOUT=5

log() { echo "cluster: $*" >&2; }
die() { log "$*"; exit 1; }

# The usage lines at the top of this file; exit code 2 for a bad command line, 0 for --help.
usage() {
    sed -n '2,8p' "${BASH_SOURCE[0]}" | sed 's/^# \{0,1\}//' >&2
    exit "${1:-2}"
}

# ----------------------------------------------------------------------------- where things are

find_bin() {
    if [[ -n "${LIVEVOTE_BIN:-}" ]]; then
        echo "$LIVEVOTE_BIN"
    elif [[ -n "${CARGO_TARGET_DIR:-}" ]]; then
        # cargo resolves a relative CARGO_TARGET_DIR against where it ran: the repo root here.
        case "$CARGO_TARGET_DIR" in
            /*) echo "$CARGO_TARGET_DIR/release/livevote" ;;
            *) echo "$ROOT/$CARGO_TARGET_DIR/release/livevote" ;;
        esac
    else
        echo "$ROOT/target/release/livevote"
    fi
}

# Debian installs nginx in /usr/sbin, which is not on every user's PATH.
find_nginx() {
    command -v nginx 2>/dev/null || { [[ -x /usr/sbin/nginx ]] && echo /usr/sbin/nginx; } || true
}

# ----------------------------------------------------------------------------- probes

# Linux hands out outgoing (ephemeral) ports from ip_local_port_range; listening ports are
# picked below it, so that no outgoing connection takes one between the pick and the bind.
ephemeral_low() {
    local low _high
    if read -r low _high < /proc/sys/net/ipv4/ip_local_port_range 2>/dev/null && (( low > 11000 )); then
        echo "$low"
    else
        echo 32768
    fi
}

# A port nobody listens on now (a connect to it is refused). It may be taken before it is
# bound, so every caller retries with another port when the bind fails.
free_port() {
    local low span p _
    low="$(ephemeral_low)"
    span=$(( low - 10000 ))
    for _ in $(seq 200); do
        p=$(( 10000 + (RANDOM * 32768 + RANDOM) % span ))
        if ! (exec 3<>"/dev/tcp/127.0.0.1/$p") 2>/dev/null; then
            echo "$p"
            return 0
        fi
    done
    die "found no free port below $low"
}

# Does 127.0.0.1:PORT answer GET PATH with 200? Plain bash (/dev/tcp), so no curl is needed; a
# subshell, so that its socket is closed whatever happens.
http_ok() (
    local port="$1" path="$2" line
    exec 2>/dev/null 3<>"/dev/tcp/127.0.0.1/$port" || exit 1
    printf 'GET %s HTTP/1.1\r\nHost: 127.0.0.1:%s\r\nConnection: close\r\n\r\n' "$path" "$port" >&3
    IFS= read -r -t 2 line <&3 || exit 1
    [[ "$line" == "HTTP/1.1 200 "* ]]
)

# Does the redis-server on 127.0.0.1:PORT answer PING (and is it done loading its AOF)?
redis_ok() (
    local port="$1" line
    exec 2>/dev/null 3<>"/dev/tcp/127.0.0.1/$port" || exit 1
    printf 'PING\r\n' >&3
    IFS= read -r -t 2 line <&3 || exit 1
    [[ "$line" == "+PONG"* ]]
)

# Is PID still a running process (not gone, not a zombie waiting to be reaped)?
alive() {
    local pid="$1" state
    [[ -r "/proc/$pid/stat" ]] || return 1
    state="$(sed 's/^.*) //' "/proc/$pid/stat" 2>/dev/null | cut -d' ' -f1)" || return 1
    [[ -n "$state" && "$state" != Z && "$state" != X ]]
}

# Waits until `CMD…` succeeds, polling every 50 ms, for at most READY_TIMEOUT seconds; fails
# at once if PID exits meanwhile. Returns 0 ready, 1 timed out, 2 the process exited.
wait_ready() {
    local pid="$1"; shift
    local deadline=$(( SECONDS + READY_TIMEOUT ))
    while :; do
        "$@" >/dev/null && return 0
        alive "$pid" || return 2
        (( SECONDS <= deadline )) || return 1
        sleep 0.05
    done
}

# The last lines of a log, for an error message.
tail_log() { [[ -f "$1" ]] && tail -n 15 "$1" | sed 's/^/    /' >&2 || true; }

# ----------------------------------------------------------------------------- pids

# Every component is started under `setsid` (in place: a background job is no group leader,
# so the pid stays the program's): a Ctrl-C in the terminal then reaches only this script,
# which stops the components in order (nginx, the instances, Redis) rather than all at once.
# DIR/pids holds one line per process started: NAME PID EXE. Lines are added as each process
# starts, so that a start that fails half-way can still be stopped; EXE lets --stop check the
# pid still belongs to the program it started (a pid can be reused after its process exits).
record_pid() { echo "$1 $2 $3" >> "$RUN/pids"; }

# Is PID still running EXE? (A binary rebuilt under a running process shows as "(deleted)".)
runs_exe() {
    local pid="$1" exe="$2" now
    now="$(readlink "/proc/$pid/exe" 2>/dev/null)" || return 1
    now="${now% (deleted)}"
    [[ "$now" == "$(readlink -f "$exe")" ]]
}

# SIGTERM to one process by its pid, SIGKILL if it has not exited after STOP_TIMEOUT seconds.
stop_one() {
    local name="$1" pid="$2" exe="$3" deadline
    alive "$pid" || return 0
    if ! runs_exe "$pid" "$exe"; then
        log "not stopping pid $pid ($name): it no longer runs $exe"
        return 0
    fi
    kill -TERM "$pid" 2>/dev/null || return 0
    deadline=$(( SECONDS + STOP_TIMEOUT ))
    while alive "$pid"; do
        if (( SECONDS > deadline )); then
            log "$name (pid $pid) did not exit within ${STOP_TIMEOUT} s of SIGTERM: SIGKILL"
            kill -KILL "$pid" 2>/dev/null || true
            break
        fi
        sleep 0.05
    done
}

# Stops everything listed in DIR/pids: nginx first (no new clients), then the instances, Redis
# last (it fsyncs its AOF on SIGTERM), so that no instance sees Redis vanish under a vote.
stop_all() {
    local dir="$1" name pid exe
    [[ -f "$dir/pids" ]] || return 0
    for want in nginx livevote redis; do
        while read -r name pid exe; do
            if [[ "$name" == "$want"* ]]; then stop_one "$name" "$pid" "$exe"; fi
        done < "$dir/pids"
    done
    # Children of this shell (the foreground mode) are reaped; others were reparented.
    wait 2>/dev/null || true
}

# The files --background DIR writes, and only those: DIR itself may be anyone's directory.
remove_files() {
    local dir="$1"
    rm -rf -- "$dir/redis" "$dir/nginx" "$dir/url" "$dir/ports" "$dir/pids"
    rm -f -- "$dir"/livevote-*.log
    rmdir -- "$dir" 2>/dev/null || true
}

# ----------------------------------------------------------------------------- starting

REDIS_PORT=
NGINX_PORT=
PORTS=()

start_redis() {
    local port attempt pid rc
    # Redis's data (the AOF) is nobody else's business.
    mkdir -p -m 700 "$RUN/redis"
    for attempt in 1 2 3 4 5; do
        port="$(free_port)"
        # Durable: every write is in the AOF and fsynced before Redis answers (appendfsync
        # always), so an acknowledged vote survives a crash of Redis or of the machine; no RDB
        # snapshots (`save ""`), whose fork would only add latency here. noeviction: an evicted
        # vote-id record would let a retried vote count twice. Loopback only; protected mode
        # stays on (it refuses only non-loopback clients when there is no password).
        cat > "$RUN/redis/redis.conf" <<EOF
port $port
bind 127.0.0.1
protected-mode yes
daemonize no
supervised no
dir $RUN/redis
logfile ""
appendonly yes
appendfsync always
save ""
maxmemory-policy noeviction
EOF
        setsid redis-server "$RUN/redis/redis.conf" </dev/null >> "$RUN/redis/redis.log" 2>&1 &
        pid=$!
        record_pid redis "$pid" "$(command -v redis-server)"
        rc=0; wait_ready "$pid" redis_ok "$port" || rc=$?
        if (( rc == 0 )); then REDIS_PORT="$port"; return 0; fi
        if (( rc == 2 )) && grep -q 'Address already in use' "$RUN/redis/redis.log"; then
            log "port $port was taken meanwhile; another (attempt $attempt)"
            continue
        fi
        log "redis-server did not answer PING on 127.0.0.1:$port; its log:"
        tail_log "$RUN/redis/redis.log"
        return 1
    done
    die "redis-server could not bind a port in 5 attempts"
}

# One instance on a port the OS picks (--addr 127.0.0.1:0): it prints the port it got.
start_instance() {
    local n="$1" logf="$RUN/livevote-$1.log" pid port rc
    # --redis: the shared tally (with --data or --memory it would be a usage error).
    # nginx (127.0.0.1) is a trusted proxy: its X-Forwarded-For names the client, for the
    # per-client viewer cap, presence and the access log. The connection cap counts before any
    # header is read, so it would count nginx for everyone together: off (nginx limits per
    # client instead, as deploy/nginx/livevote-proxy.conf does).
    setsid "$BIN" --addr 127.0.0.1:0 --www "$ROOT/www" \
        --redis "redis://127.0.0.1:$REDIS_PORT" \
        --trusted-proxy 127.0.0.1 --max-connections-per-ip 0 \
        </dev/null >> "$logf" 2>&1 &
    pid=$!
    record_pid "livevote$n" "$pid" "$BIN"
    listening() { grep -oE 'listening on http://127\.0\.0\.1:[0-9]+/' "$logf" 2>/dev/null | head -n1 | grep -oE '[0-9]+/$' | tr -d /; }
    rc=0; wait_ready "$pid" listening || rc=$?
    if (( rc == 0 )); then
        port="$(listening)"
        rc=0; wait_ready "$pid" http_ok "$port" /votes || rc=$?
    fi
    if (( rc != 0 )); then
        log "livevote instance $n did not answer GET /votes; its log:"
        tail_log "$logf"
        return 1
    fi
    PORTS+=("$port")
}

start_nginx() {
    local nginx attempt port pid rc upstreams="" p dir="$RUN/nginx"
    nginx="$(find_nginx)"
    mkdir -p "$dir/tmp"
    for p in "${PORTS[@]}"; do
        upstreams+="        server 127.0.0.1:$p max_fails=1 fail_timeout=2s;"$'\n'
    done
    for attempt in 1 2 3 4 5; do
        port="${CLUSTER_PORT:-$(free_port)}"
        # The template's @NAME@ placeholders; the upstream lines go in through a file, since
        # they span several lines.
        printf '%s' "$upstreams" > "$dir/upstreams"
        sed -e "s|@RUN@|$dir|g" -e "s|@LISTEN@|127.0.0.1:$port|g" \
            -e "/^@UPSTREAMS@\$/{r $dir/upstreams" -e 'd}' "$TEMPLATE" > "$dir/nginx.conf"
        rm -f "$dir/upstreams"
        : > "$dir/error.log"
        # -p/-c/-e: nothing read or written outside $dir (Debian's default is /etc/nginx,
        # /var/log/nginx, /run/nginx.pid); `daemon off` in the config keeps it our child.
        setsid "$nginx" -p "$dir/" -c "$dir/nginx.conf" -e "$dir/error.log" \
            </dev/null >> "$dir/stderr.log" 2>&1 &
        pid=$!
        record_pid nginx "$pid" "$nginx"
        rc=0; wait_ready "$pid" http_ok "$port" /votes || rc=$?
        if (( rc == 0 )); then NGINX_PORT="$port"; return 0; fi
        if (( rc == 2 )) && [[ -z "${CLUSTER_PORT:-}" ]] \
            && grep -q 'Address already in use' "$dir/error.log" "$dir/stderr.log"; then
            log "port $port was taken meanwhile; another (attempt $attempt)"
            continue
        fi
        log "nginx did not answer GET /votes on 127.0.0.1:$port; its logs:"
        tail_log "$dir/error.log"
        tail_log "$dir/stderr.log"
        return 1
    done
    die "nginx could not bind a port in 5 attempts"
}

start_all() {
    BIN="$(find_bin)"
    [[ -x "$BIN" ]] || die "$BIN is missing: run \`make release\` (or \`make cluster\`)"
    command -v redis-server >/dev/null 2>&1 || die "redis-server is missing: run \`make cluster-deps\`"
    [[ -n "$(find_nginx)" ]] || die "nginx is missing: run \`make cluster-deps\`"
    [[ -f "$TEMPLATE" ]] || die "$TEMPLATE is missing"
    [[ "$INSTANCES" =~ ^[1-9][0-9]*$ ]] || die "CLUSTER_INSTANCES must be a positive number"
    if [[ "$(id -u)" == 0 ]]; then
        # As root, nginx's workers run as `nobody`: they must be able to reach the directories
        # nginx makes for them (search only, no listing; redis/ stays private).
        chmod 711 "$RUN"
    fi

    start_redis
    # One after the other: the first instance writes the candidates and the epoch into the
    # empty Redis, the others find them there.
    local n
    for (( n = 1; n <= INSTANCES; n++ )); do start_instance "$n"; done
    start_nginx

    local url="http://127.0.0.1:$NGINX_PORT/index"
    echo "$url" > "$RUN/url"
    {
        echo "redis=$REDIS_PORT"
        echo "nginx=$NGINX_PORT"
        for (( n = 1; n <= INSTANCES; n++ )); do echo "livevote$n=${PORTS[n-1]}"; done
    } > "$RUN/ports"

    local addrs="" p
    for p in "${PORTS[@]}"; do addrs+=" 127.0.0.1:$p"; done
    cat <<EOF
livevote cluster, files in $RUN
  redis-server  127.0.0.1:$REDIS_PORT  (appendonly yes, appendfsync always: durable)
  livevote     $addrs  (--redis redis://127.0.0.1:$REDIS_PORT)
  nginx         127.0.0.1:$NGINX_PORT  (round-robin, no stickiness; WebSocket and SSE proxied)

  Open this URL in several browsers:   $url
  (add ?transport=ws, sse, longpoll or poll to force one transport)

nginx is a trusted proxy (--trusted-proxy 127.0.0.1): the instances see each client's own
address in X-Forwarded-For. Their per-address connection cap counts before any header is
read, so it would count nginx for everyone: it is off (--max-connections-per-ip 0).
EOF
}

# ----------------------------------------------------------------------------- modes

mode=foreground
case "${1:-}" in
    "") ;;
    --background) [[ $# == 2 ]] || usage; mode=background; RUN="$2" ;;
    --stop) [[ $# == 2 ]] || usage; mode=stop; RUN="$2" ;;
    -h|--help) usage 0 ;;
    *) usage ;;
esac

case "$mode" in
    stop)
        [[ -d "$RUN" ]] || exit 0
        stop_all "$RUN"
        remove_files "$RUN"
        ;;

    background)
        mkdir -p "$RUN"
        RUN="$(cd "$RUN" && pwd)"
        [[ ! -e "$RUN/pids" ]] || die "$RUN/pids exists: a cluster may be running there (scripts/cluster.sh --stop $RUN)"
        # A start that fails half-way stops what it started; its logs stay in DIR for the
        # caller to read, and --stop DIR removes them.
        ready=no
        trap '[[ $ready == yes ]] || stop_all "$RUN"' EXIT
        start_all
        ready=yes
        echo "scripts/cluster.sh --stop $RUN stops it."
        ;;

    foreground)
        RUN="$(mktemp -d "${TMPDIR:-/tmp}/livevote-cluster.XXXXXX")"
        # Whatever ends this script (Ctrl-C, SIGTERM, a component dying, a failed start) stops
        # everything it started, by pid, and removes the temp dir.
        trap 'stop_all "$RUN"; rm -rf -- "$RUN"' EXIT
        trap 'exit 130' INT
        trap 'exit 143' TERM
        start_all
        echo "Ctrl-C stops everything and removes $RUN."
        # Until a signal, or until one component exits by itself (then the rest are stopped).
        wait -n || true
        while read -r name pid _; do
            alive "$pid" || log "$name (pid $pid) has exited; stopping everything"
        done < "$RUN/pids"
        exit 1
        ;;
esac
