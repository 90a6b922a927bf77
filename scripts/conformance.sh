#!/usr/bin/env bash
# Runs the Autobahn TestSuite cases (through `kosoku`, a native runner of Autobahn's own case
# files, from PyPI) against the release server's `/chatsocket` echo endpoint, and judges the
# report. Sections 12 and 13 (permessage-deflate) are excluded: we negotiate no extension.
#
# A case passes when its behavior is OK, NON-STRICT or INFORMATIONAL and its close behavior is
# OK or INFORMATIONAL. Prints one line per case that does not pass, then
# `autobahn: N passed, M failed`; exits non-zero if any case failed or if too few cases ran
# (a broken run must not pass).
#
# Usage: bash scripts/conformance.sh        (from anywhere; works in the project root)
# Env:   KOSOKU_PARALLELISM (default 4: most of the run is cases sleeping between chops, so
#        overlapping them quarters the time; stable on 2 busy cores, and the 16 MiB cases of
#        section 9 still finish in under 0.5 s of their 10 s), AUTOBAHN_MIN_CASES (default 200).
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"

VENV="$ROOT/.venv"
OUTDIR="$ROOT/reports/autobahn"
PARALLELISM="${KOSOKU_PARALLELISM:-4}"
MIN_CASES="${AUTOBAHN_MIN_CASES:-200}"
STARTUP_TIMEOUT_S=30

log() { echo "conformance: $*" >&2; }

# --- Tooling: a venv with kosoku, created once and reused. -----------------------------------
ensure_python() {
    if ! command -v python3 >/dev/null 2>&1; then
        log "installing python3 (apt)"
        apt-get update -qq
        DEBIAN_FRONTEND=noninteractive apt-get install -y -qq python3 python3-venv >/dev/null
    fi
}

ensure_venv() {
    if [[ -x "$VENV/bin/python" ]]; then
        return
    fi
    ensure_python
    log "creating $VENV"
    if ! python3 -m venv "$VENV"; then
        # Debian's python3 ships venv/ensurepip separately.
        rm -rf "$VENV"
        log "installing python3-venv (apt)"
        apt-get update -qq
        DEBIAN_FRONTEND=noninteractive apt-get install -y -qq python3-venv >/dev/null
        python3 -m venv "$VENV"
    fi
}

ensure_kosoku() {
    if [[ -x "$VENV/bin/kosoku" ]]; then
        return
    fi
    log "installing kosoku into $VENV"
    "$VENV/bin/python" -m pip install --quiet --disable-pip-version-check kosoku
}

ensure_venv
ensure_kosoku
PY="$VENV/bin/python"

# --- The server under test. ------------------------------------------------------------------
cargo build --release --quiet
BIN="$ROOT/target/release/livevote"

PORT="$("$PY" -c 'import socket
s = socket.socket()
s.bind(("127.0.0.1", 0))
print(s.getsockname()[1])')"

SERVER_PID=""
stop_server() {
    if [[ -n "$SERVER_PID" ]] && kill -0 "$SERVER_PID" 2>/dev/null; then
        kill "$SERVER_PID" 2>/dev/null || true
        wait "$SERVER_PID" 2>/dev/null || true
    fi
}
trap stop_server EXIT

rm -rf "$OUTDIR"
mkdir -p "$OUTDIR"
"$BIN" --addr "127.0.0.1:$PORT" --quiet --memory >"$OUTDIR/server.log" 2>&1 &
SERVER_PID=$!

# Wait until the server accepts connections (or has died).
deadline=$((SECONDS + STARTUP_TIMEOUT_S))
until (exec 3<>"/dev/tcp/127.0.0.1/$PORT") 2>/dev/null; do
    if ! kill -0 "$SERVER_PID" 2>/dev/null; then
        log "server exited before accepting connections:"
        cat "$OUTDIR/server.log" >&2
        exit 1
    fi
    if ((SECONDS >= deadline)); then
        log "server did not accept connections on port $PORT within ${STARTUP_TIMEOUT_S}s"
        exit 1
    fi
    sleep 0.1
done

# --- Run the suite. ---------------------------------------------------------------------------
log "running kosoku against ws://127.0.0.1:$PORT/chatsocket (parallelism $PARALLELISM)"
started=$SECONDS
set +e
"$VENV/bin/kosoku" -o "$OUTDIR" -p "$PARALLELISM" -x '12.*' -x '13.*' \
    "ws://127.0.0.1:$PORT/chatsocket" >"$OUTDIR/kosoku.log" 2>&1
kosoku_rc=$?
set -e
log "kosoku finished in $((SECONDS - started))s (exit $kosoku_rc; log in $OUTDIR/kosoku.log)"

server_died=0
if ! kill -0 "$SERVER_PID" 2>/dev/null; then
    log "the server died during the run (see $OUTDIR/server.log)"
    server_died=1
fi
stop_server
trap - EXIT

# --- Judge the report (our rule, not kosoku's exit code). ------------------------------------
judge_rc=0
"$PY" - "$OUTDIR/index.json" "$MIN_CASES" <<'EOF' || judge_rc=$?
import json
import sys

index_path, min_cases = sys.argv[1], int(sys.argv[2])
PASS_BEHAVIOR = {"OK", "NON-STRICT", "INFORMATIONAL"}
PASS_CLOSE = {"OK", "INFORMATIONAL"}

def case_key(case_id):
    return [int(p) if p.isdigit() else p for p in case_id.split(".")]

try:
    with open(index_path) as f:
        index = json.load(f)
except (OSError, ValueError) as e:
    print(f"conformance: no readable report at {index_path}: {e}")
    print("autobahn: 0 passed, 1 failed")
    sys.exit(1)

passed = failed = 0
for agent, cases in sorted(index.items()):
    for case_id in sorted(cases, key=case_key):
        c = cases[case_id]
        behavior, close = c.get("behavior"), c.get("behaviorClose")
        if behavior in PASS_BEHAVIOR and close in PASS_CLOSE:
            passed += 1
        else:
            failed += 1
            print(
                f"FAIL {case_id}: behavior={behavior} behaviorClose={close} "
                f"remoteCloseCode={c.get('remoteCloseCode')} ({agent}, {c.get('reportfile')})"
            )

total = passed + failed
if total < min_cases:
    print(f"conformance: only {total} cases ran (expected at least {min_cases})")
print(f"autobahn: {passed} passed, {failed} failed")
sys.exit(1 if failed or total < min_cases else 0)
EOF
if ((judge_rc != 0 || server_died != 0)); then
    exit 1
fi
