#!/usr/bin/env bash
# Side-by-side benchmark of two livevote builds: the same load generator runs each scenario
# against build A, then build B, alternating for ROUNDS rounds, so the noise of a shared machine
# falls on both alike. Prints every run's result line; compare medians.
#
#   bash scripts/bench-ab.sh REV                 # REV (built in a temporary worktree) vs the tree
#   ROUNDS=3 BENCH_ONLY=get_index,echo bash scripts/bench-ab.sh HEAD~5
#
# Scenarios: BENCH_ONLY (default: the per-request, fan-out and memory ones). livevote only (no
# peers). Stops by itself; everything runs on 127.0.0.1.
set -euo pipefail
cd "$(dirname "$0")/.."
rev=${1:?usage: scripts/bench-ab.sh REV}
rounds=${ROUNDS:-2}
export BENCH_RUNS=1 BENCH_PEERS=0 BENCH_QUIET_WAIT=${BENCH_QUIET_WAIT:-2}
export BENCH_ONLY=${BENCH_ONLY:-ws_fanout_1k,ws_fanout_10k,longpoll_1k,get_index,post_vote_memory,post_vote_durable,idle_memory_5k,echo}

base=$(mktemp -d)
trap 'git worktree remove --force "$base" >/dev/null 2>&1 || true' EXIT
git worktree add -q --detach "$base" "$rev"
(cd "$base" && CARGO_TARGET_DIR="$base/target" cargo build --release -q)
cargo build --release -q
cargo build --release -q --manifest-path bench/Cargo.toml

for round in $(seq "$rounds"); do
    for side in A B; do
        if [ "$side" = A ]; then bin=$base/target/release/livevote; name=$rev; else bin=target/release/livevote; name=tree; fi
        echo "=== round $round: $side ($name)"
        bench/target/release/livevote-bench --server "$bin" --www www 2>&1 | grep '^\[' | sed 's/ | client.*//'
    done
done
