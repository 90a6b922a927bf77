#!/usr/bin/env bash
# Installs what the browser tests need, idempotently; a second run does nothing and takes ~0 s.
#  - Debian's Chromium (/usr/bin/chromium), only when it is missing: playwright-core drives it
#    (Playwright's own browser download cannot work on these machines);
#  - fonts-noto-cjk, so screenshots show the Chinese candidate names (skipped with a warning if
#    the apt sources do not have it: the tests do not need it);
#  - playwright-core from npm, by `npm ci` from the committed package-lock.json, only when
#    node_modules is missing or was installed from another package.json/package-lock.json.
# Runs as root (apt-get); uses sudo when not root and sudo exists.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")"

log() { echo "e2e-install: $*" >&2; }

as_root() {
    if [[ "$(id -u)" == 0 ]]; then "$@";
    elif command -v sudo >/dev/null 2>&1; then sudo "$@";
    else log "need root to run: $*"; exit 1; fi
}

installed() { dpkg-query -W -f='${Status}' "$1" 2>/dev/null | grep -q 'install ok installed'; }

# --- Debian packages ------------------------------------------------------------------------
pkgs=()
[[ -x /usr/bin/chromium ]] || pkgs+=(chromium)
installed fonts-noto-cjk || pkgs+=(fonts-noto-cjk)
if (( ${#pkgs[@]} )); then
    as_root apt-get update -qq
    todo=()
    for p in "${pkgs[@]}"; do
        if [[ "$p" == fonts-noto-cjk ]] && ! apt-cache policy "$p" 2>/dev/null | grep -q 'Candidate: [0-9]'; then
            log "warning: $p is not in the apt sources; screenshots will show boxes for CJK names"
            continue
        fi
        todo+=("$p")
    done
    if (( ${#todo[@]} )); then
        log "apt-get install ${todo[*]}"
        as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${todo[@]}" >/dev/null
    fi
fi
[[ -x /usr/bin/chromium ]] || { log "/usr/bin/chromium is still missing"; exit 1; }

# --- Node.js and playwright-core --------------------------------------------------------------
if ! command -v node >/dev/null 2>&1 || ! command -v npm >/dev/null 2>&1; then
    log "node and npm (Node.js >= 20) are needed"; exit 1
fi
major="$(node -p 'process.versions.node.split(".")[0]')"
if (( major < 20 )); then log "Node.js >= 20 is needed (found $(node --version))"; exit 1; fi

stamp=node_modules/.e2e-installed
want="$(cat package.json package-lock.json | sha256sum | cut -d' ' -f1) node-$major"
if [[ -f node_modules/playwright-core/package.json && -f "$stamp" && "$(cat "$stamp")" == "$want" ]]; then
    exit 0
fi
log "npm ci (playwright-core)"
# The project's .npmrc: no audit, no fund, and no registry addresses in the lockfile.
npm ci --no-audit --no-fund --loglevel=error
echo "$want" > "$stamp"
