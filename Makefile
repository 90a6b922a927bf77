# livevote — two commands on a fresh machine: `make run` and `make test`.
# Everything a test needs (the conformance runner's Python venv) is installed here, idempotently.

CARGO ?= cargo
ADDR  ?= 127.0.0.1:8080

.PHONY: run build release test lint unit redis-deps promtool-deps qr-deps packaging \
	packaging-deps proxy-deps fuzz-check conformance e2e clean

## Build and serve http://127.0.0.1:8080 (ADDR=host:port to change).
## ADMIN_TOKEN=… sets the admin API's token (else one is made and printed at start).
ADMIN_TOKEN ?=
run: release
	./target/release/livevote --addr $(ADDR) $(if $(ADMIN_TOKEN),--admin-token $(ADMIN_TOKEN))

build:
	$(CARGO) build

release:
	$(CARGO) build --release

## Every test: format and lint, unit and integration tests, the packaging checks, every fuzz
## target over its regression corpus plus fixed-seed fresh runs, the Autobahn conformance suite,
## the browser tests.
test: lint unit packaging fuzz-check conformance e2e

lint:
	$(CARGO) fmt --check
	$(CARGO) clippy --all-targets -- -D warnings

unit: redis-deps promtool-deps qr-deps
	$(CARGO) test --all-targets

## Debian's redis-server for the Redis client tests (tests/redis_client.rs), installed only
## when `redis-server` is not on PATH; the system service the package may start is stopped.
redis-deps:
	bash scripts/install-redis.sh

## Debian's prometheus package for `promtool check metrics` (tests/metrics_promtool.rs), only
## when `promtool` is not on PATH; without its Recommends, and its service stopped again.
promtool-deps:
	bash scripts/install-promtool.sh

## Debian's zbar-tools for `zbarimg`, the scanner that decodes the QR codes of src/qr.rs
## (tests/qr_decode.rs), only when `zbarimg` is not on PATH; without its Recommends.
qr-deps:
	bash scripts/install-zbar.sh

## The Dockerfile (every file it copies exists, it builds as `make release` does, non-root,
## HEALTHCHECK, VOLUME) and deploy/systemd/livevote.service (`systemd-analyze verify` and
## `security`), without building an image or booting systemd: scripts/check-packaging.sh.
packaging: release packaging-deps
	bash scripts/check-packaging.sh target/release/livevote

## systemd-analyze (Debian's systemd package), only when missing.
packaging-deps:
	bash scripts/install-systemd-analyze.sh

## openssl, nginx and caddy from Debian's apt, each only when missing (the services the
## packages may start are stopped again): scripts/install-proxy-deps.sh.
proxy-deps:
	bash scripts/install-proxy-deps.sh

## RFC 6455 conformance: the Autobahn cases (sections 1-10) against /chatsocket.
conformance: release
	bash scripts/conformance.sh

## Browser tests: the release server driven in Debian's Chromium by playwright-core (e2e/).
## Installs chromium, fonts-noto-cjk (apt) and e2e/node_modules (npm ci) when missing, and
## redis-server and nginx for the run through `make cluster`'s balancer (7-cluster), and
## openssl, nginx and caddy for the run behind deploy/nginx/livevote.conf with TLS and the
## `caddy validate` of deploy/caddy/Caddyfile (8-proxy), and zbar-tools' zbarimg, which decodes
## the presenter view's QR code from its screenshot (9-polls).
e2e: release cluster-deps proxy-deps qr-deps
	bash e2e/install.sh
	cd e2e && node run.js

clean:
	$(CARGO) clean
	rm -rf reports .venv

## Fuzz the pure parsers and codecs (fuzz/) with cargo-fuzz on the stable toolchain, each target
## for FUZZ_SECONDS (default 60); fails on any crash. Not part of `make test`. See README.
FUZZ_SECONDS ?= 60
.PHONY: fuzz
fuzz:
	FUZZ_SECONDS=$(FUZZ_SECONDS) CARGO=$(CARGO) bash scripts/fuzz.sh

## Part of `make test`: every fuzz target replays its committed regression corpus
## (fuzz/seeds/TARGET) and then FUZZ_CHECK_RUNS fresh inputs from a fixed seed: deterministic,
## about a minute in all. Installs cargo-fuzz when missing.
FUZZ_CHECK_RUNS ?= 100000
fuzz-check:
	FUZZ_RUNS=$(FUZZ_CHECK_RUNS) FUZZ_SEED=1 FUZZ_SECONDS=300 CARGO=$(CARGO) bash scripts/fuzz.sh

## Benchmarks (bench/: its own crate and workspace, so `cargo test` and `make test` never build
## it): the server and the load generator in release mode, every scenario against a fresh server
## on 127.0.0.1, a table of medians, and the results section of BENCHMARKS.md rewritten.
## Every scenario the peers implement also runs, alternating run by run with livevote, against
## the two comparison peers: bench/src/bin/peer_tungstenite.rs (std threads, httparse,
## tungstenite) and bench/peer_node/server.js (node's http and ws; `npm ci` from its lockfile
## when bench/peer_node/node_modules is missing). Prints the table and the regression gate
## (`gate ...` lines: livevote's ratios against the peers). Not part of `make test`.
## BENCH_RUNS (default 3) runs per scenario; BENCH_ONLY=id,id for some scenarios; BENCH_PEERS=0
## livevote only (BENCH_PEERS=tungstenite or =node: one peer); more knobs in bench/src/main.rs.
## Two builds side by side: BASE (a git revision) against the tree, alternating (scripts/bench-ab.sh).
.PHONY: bench-ab
bench-ab:
	bash scripts/bench-ab.sh $(BASE)

.PHONY: bench
bench: release redis-deps
	$(CARGO) build --release --manifest-path bench/Cargo.toml
	test -f bench/peer_node/node_modules/ws/package.json || \
		(cd bench/peer_node && npm ci --no-audit --no-fund --loglevel=error)
	bench/target/release/livevote-bench --server target/release/livevote --www www \
		--peer-tungstenite bench/target/release/peer_tungstenite \
		--peer-node bench/peer_node --out BENCHMARKS.md

## Many instances on this machine (issue 10): Debian's redis-server (durable: AOF, appendfsync
## always) in a temp dir, three release instances sharing it through --redis, and Debian's nginx
## as a round-robin balancer with no stickiness in front (WebSocket and SSE proxied). Prints one
## URL to open in several browsers; Ctrl-C stops everything and removes the temp dir.
## scripts/cluster.sh --background DIR / --stop DIR is the same for scripts (e2e/tests/7-cluster).
.PHONY: cluster cluster-deps
cluster: cluster-deps release
	bash scripts/cluster.sh

## redis-server and nginx from Debian's apt, each only when missing; the system services the
## packages may start are stopped again (the cluster runs its own, by pid).
cluster-deps:
	bash scripts/install-redis.sh
	bash scripts/install-nginx.sh
