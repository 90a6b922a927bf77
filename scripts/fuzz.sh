#!/usr/bin/env bash
# `make fuzz`: runs every cargo-fuzz target in fuzz/ for FUZZ_SECONDS (default 60) each and
# fails if any of them finds a crash (a panic, a failed invariant, a timeout or running out of
# memory). Works on the stable toolchain: see README, "Fuzzing".
#
#   FUZZ_SECONDS=600 make fuzz            longer runs
#   FUZZ_TARGETS="ws_frame form" make fuzz   only some targets
#   FUZZ_SANITIZER=address make fuzz      also AddressSanitizer (needs RUSTC_BOOTSTRAP, below)
#
# Check mode (`make fuzz-check`, part of `make test`): with FUZZ_RUNS=N, each target replays its
# committed regression corpus (fuzz/seeds/TARGET) and then runs N fresh inputs from the fixed
# seed FUZZ_SEED (default 1), with FUZZ_SECONDS as a safety cap only. Deterministic: the same
# tree runs the same inputs, so a parser regression fails every submission alike. New inputs
# go to a temporary corpus, never into the committed one.
set -euo pipefail
cd "$(dirname "$0")/.."

seconds=${FUZZ_SECONDS:-60}
runs=${FUZZ_RUNS:-}
seed=${FUZZ_SEED:-1}
cargo=${CARGO:-cargo}
sanitizer=${FUZZ_SANITIZER:-none}

# cargo-fuzz builds the targets with coverage instrumentation and runs libFuzzer; install it
# once (it is a plain crates.io binary; --locked uses its tested dependency versions).
if ! "$cargo" fuzz --version >/dev/null 2>&1; then
    "$cargo" install cargo-fuzz --locked
fi

# `--sanitizer none` is what makes this work on stable. cargo-fuzz then passes only stable
# flags: `-Cpasses=sancov-module` and `-Cllvm-args=-sanitizer-coverage-{level=4,
# inline-8bit-counters,pc-table,trace-compares,stack-depth}` for libFuzzer's coverage feedback,
# `--cfg fuzzing`, and `-Cdebug-assertions` (so overflow checks and debug_assert! are on).
# A sanitizer needs `-Zsanitizer`, a nightly flag; the crate is `#![forbid(unsafe_code)]`, so
# what a sanitizer would add is small. On request it is enabled through RUSTC_BOOTSTRAP (the
# stable toolchain ships the sanitizer runtimes, only the flag is gated).
if [ "$sanitizer" != none ]; then
    export RUSTC_BOOTSTRAP=1
fi
fuzz=(--sanitizer "$sanitizer")

if [ -n "${FUZZ_TARGETS:-}" ]; then
    read -r -a targets <<<"$FUZZ_TARGETS"
else
    mapfile -t targets < <("$cargo" fuzz list)
fi

"$cargo" fuzz build "${fuzz[@]}"

# The first and last `cov:` line of a libFuzzer log, as "cov ft corp".
cov_of() { grep -E "$1" "$2" | sed -nE 's/.* cov: ([0-9]+) ft: ([0-9]+) corp: ([0-9]+).*/\1 \2 \3/p' | "$3" -n 1; }
stat_of() { sed -nE "s/^stat::$1: *([0-9]+).*/\\1/p" "$2" | tail -n 1; }

failed=()
summary=()
for t in "${targets[@]}"; do
    artifacts=fuzz/artifacts/$t
    mkdir -p "$artifacts"
    log=$artifacts/last-run.log
    rc=0
    if [ -n "$runs" ]; then
        # Check mode: a throw-away corpus first (libFuzzer adds to the first directory), the
        # committed regression corpus second.
        corpus=$(mktemp -d)
        echo "fuzz $t: regression corpus + $runs runs from seed $seed (log: $log)"
        "$cargo" fuzz run "${fuzz[@]}" "$t" "$corpus" "fuzz/seeds/$t" -- \
            -runs="$runs" -seed="$seed" -max_total_time="$seconds" -timeout=10 \
            -print_final_stats=1 >"$log" 2>&1 || rc=$?
        rm -rf "$corpus"
    else
        corpus=fuzz/corpus/$t
        mkdir -p "$corpus"
        # The committed seeds start the working corpus; what libFuzzer adds stays out of git.
        for s in "fuzz/seeds/$t"/*; do
            if [ -f "$s" ] && [ ! -e "$corpus/${s##*/}" ]; then
                cp "$s" "$corpus/"
            fi
        done
        echo "fuzz $t: running for ${seconds} s (log: $log)"
        "$cargo" fuzz run "${fuzz[@]}" "$t" "$corpus" -- \
            -max_total_time="$seconds" -timeout=10 -print_final_stats=1 >"$log" 2>&1 || rc=$?
    fi

    read -r cov0 ft0 corp0 < <(cov_of 'INITED' "$log" head || true) || true
    read -r cov1 ft1 corp1 < <(cov_of ' cov: ' "$log" tail || true) || true
    done_runs=$(stat_of number_of_executed_units "$log")
    rate=$(stat_of average_exec_per_sec "$log")
    stats="${done_runs:-?} runs, ${rate:-?} exec/s, cov ${cov0:-?}→${cov1:-?}, ft ${ft0:-?}→${ft1:-?}, corpus ${corp0:-?}→${corp1:-?}"
    if [ "$rc" -eq 0 ]; then
        summary+=("fuzz $t: ok: $stats")
    else
        crash=$(sed -nE 's/.*Test unit written to (.*)$/\1/p' "$log" | tail -n 1)
        why=$(grep -m 1 -E "panicked at|ERROR: libFuzzer|SUMMARY" "$log" || true)
        summary+=("fuzz $t: FAILED (exit $rc): ${crash:-no artifact} — ${why:-see $log}")
        failed+=("$t")
        tail -n 40 "$log" >&2
    fi
done

echo
printf '%s\n' "${summary[@]}"
if [ "${#failed[@]}" -gt 0 ]; then
    echo "fuzz: ${#failed[@]} target(s) failed: ${failed[*]}; reproduce with" \
        "cargo fuzz run -s $sanitizer TARGET fuzz/artifacts/TARGET/crash-…" >&2
    exit 1
fi
echo "fuzz: ${#targets[@]} target(s) ran clean"
