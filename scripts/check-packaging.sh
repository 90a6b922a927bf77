#!/usr/bin/env bash
# The packaging, checked without building an image (no image registry is reachable here) and
# without booting systemd (a container has none as PID 1):
#
#   bash scripts/check-packaging.sh [BINARY]     (default target/release/livevote)
#
# Dockerfile:
#   - every file or directory it COPYs from the build context exists, and .dockerignore lets it
#     through; every build input the tree has (Cargo.toml, Cargo.lock, build.rs, src, www) is
#     among them, and `cargo check --offline` on a copy of just those succeeds;
#   - it builds with the Makefile's `release` recipe, exactly (`$(CARGO)` read as `cargo`);
#   - it runs as a non-root USER, has a HEALTHCHECK, a VOLUME with STATE_DIRECTORY set to it,
#     and EXPOSEs the port it listens on.
# deploy/systemd/livevote.service:
#   - `systemd-analyze verify` passes and prints nothing (it exits 0 on unknown keys, so any
#     output is a failure). verify insists that ExecStart's program exists, so it runs with
#     --root on a temporary tree: BINARY at the ExecStart path, the unit in etc/systemd/system,
#     and the distribution's units (sysinit.target and the rest a service depends on by
#     default) in lib/systemd/system, where Debian's systemd looks under a root;
#   - `systemd-analyze security --offline=yes` rates its exposure at most 2.0 ("OK").
# systemd-analyze comes with Debian's systemd package (`make packaging-deps`).
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

BINARY="${1:-target/release/livevote}"
UNIT=deploy/systemd/livevote.service
fail=0
problem() { echo "check-packaging: $*" >&2; fail=1; }

# --- Dockerfile ---------------------------------------------------------------------------
[[ -f Dockerfile ]] || { problem "no Dockerfile"; exit 1; }
# Instructions with their continuation lines joined.
instructions="$(sed -e ':a' -e '/\\$/N; s/\\\n//; ta' Dockerfile | grep -vE '^\s*(#|$)')"

copies=0
copied=()
context="$(mktemp -d)"
trap 'rm -rf -- "$context"' EXIT
while read -r _ args; do
    # COPY [--chown=…] SRC… DEST; from another stage (--from=…): not the build context.
    [[ "$args" == *--from=* ]] && continue
    read -ra words <<< "$args"
    srcs=()
    for w in "${words[@]}"; do [[ "$w" == --* ]] || srcs+=("$w"); done
    dest="${srcs[-1]}"
    unset 'srcs[${#srcs[@]}-1]'
    for src in "${srcs[@]}"; do
        copies=$((copies + 1))
        copied+=("${src%/}")
        [[ -e "$src" ]] || { problem "Dockerfile copies '$src', which does not exist"; continue; }
        # The build stage's context as the image gets it (destinations relative to WORKDIR).
        if [[ "$dest" == */ || "${#srcs[@]}" -gt 1 ]]; then
            mkdir -p "$context/$dest" && cp -r "$src" "$context/$dest"
        else
            mkdir -p "$(dirname "$context/$dest")" && cp -r "$src" "$context/$dest"
        fi
        if [[ -f .dockerignore ]] && grep -qx '\*' .dockerignore \
            && ! grep -qx "!${src%/}" .dockerignore; then
            problem "Dockerfile copies '$src', which .dockerignore leaves out"
        fi
    done
done < <(grep -E '^COPY ' <<< "$instructions")
(( copies > 0 )) || problem "Dockerfile copies nothing from the build context"

# Every input of the build that the tree has is copied, and the copied context alone builds:
# `cargo check --offline` on it runs build.rs (which embeds www/) and resolves every
# include_bytes!, as `cargo build` in the image would (without the time a release build takes).
for input in Cargo.toml Cargo.lock build.rs src www; do
    [[ -e "$input" ]] || continue
    printf '%s\n' "${copied[@]}" | grep -qxF "$input" \
        || problem "Dockerfile does not copy '$input', which the build reads"
done
if ! out="$(CARGO_TARGET_DIR="$context/target" cargo check --offline --release --quiet \
    --manifest-path "$context/Cargo.toml" 2>&1)"; then
    problem "the Dockerfile's build context does not build: $out"
fi

release="$(awk '/^release:/ { getline; sub(/^\t/, ""); print; exit }' Makefile)"
release="${release//\$(CARGO)/cargo}"
[[ -n "$release" ]] || problem "no release recipe in the Makefile"
grep -qxF "RUN $release" <<< "$instructions" \
    || problem "Dockerfile does not build with the Makefile's release recipe: 'RUN $release'"

user="$(grep -E '^USER ' <<< "$instructions" | tail -n1 | awk '{print $2}')"
[[ -n "$user" && "${user%%:*}" != root && "${user%%:*}" != 0 ]] \
    || problem "Dockerfile does not run as a non-root USER"
grep -qE '^HEALTHCHECK .*CMD' <<< "$instructions" || problem "Dockerfile has no HEALTHCHECK"
volume="$(grep -E '^VOLUME ' <<< "$instructions" | grep -oE '/[^" ]+' | head -n1)"
[[ -n "$volume" ]] || problem "Dockerfile has no VOLUME"
grep -qE "^ENV STATE_DIRECTORY=$volume\$" <<< "$instructions" \
    || problem "Dockerfile does not set STATE_DIRECTORY to its VOLUME ($volume)"
grep -qE '^EXPOSE 8080' <<< "$instructions" || problem "Dockerfile does not EXPOSE 8080"
grep -qF '"--addr", "0.0.0.0:8080"' <<< "$instructions" \
    || problem "Dockerfile's CMD does not listen on 0.0.0.0:8080"

# --- systemd unit -------------------------------------------------------------------------
[[ -f "$UNIT" ]] || { problem "no $UNIT"; exit 1; }
command -v systemd-analyze >/dev/null || { problem "systemd-analyze is missing (make packaging-deps)"; exit 1; }
[[ -x "$BINARY" ]] || { problem "no $BINARY to stand at ExecStart (make release)"; exit 1; }
exec_start="$(grep -E '^ExecStart=' "$UNIT" | head -n1 | sed -E 's/^ExecStart=[-@:+!]*//; s/ .*//')"
[[ "$exec_start" == /* ]] || problem "ExecStart is not an absolute path: $exec_start"

root="$(mktemp -d)"
trap 'rm -rf -- "$context" "$root"' EXIT
install -D -m 0755 "$BINARY" "$root$exec_start"
install -D -m 0644 "$UNIT" "$root/etc/systemd/system/livevote.service"
mkdir -p "$root/lib/systemd"
cp -r /lib/systemd/system "$root/lib/systemd/system"

if ! out="$(systemd-analyze verify --man=no --root="$root" livevote.service 2>&1)"; then
    problem "systemd-analyze verify failed: $out"
elif [[ -n "$out" ]]; then
    problem "systemd-analyze verify: $out"
fi
if ! out="$(systemd-analyze security --offline=yes --root="$root" --threshold=20 livevote.service 2>&1)"; then
    problem "systemd-analyze security: exposure above 2.0:"$'\n'"$(grep -E '✗|Overall' <<< "$out")"
fi

if (( fail )); then exit 1; fi
echo "check-packaging: Dockerfile ($copies copied paths, build = '$release') and $UNIT (systemd-analyze verify, security $(grep -oE 'level for [^:]+: [0-9.]+' <<< "$out" | awk '{print $NF}')) are fine"
