# livevote — two commands on a fresh machine: `make run` and `make test`.
# Everything a test needs (the conformance runner's Python venv) is installed here, idempotently.

CARGO ?= cargo
ADDR  ?= 127.0.0.1:8080

.PHONY: run build release test lint unit conformance clean

## Build and serve http://127.0.0.1:8080 (ADDR=host:port to change).
run: release
	./target/release/livevote --addr $(ADDR)

build:
	$(CARGO) build

release:
	$(CARGO) build --release

## Every test: format and lint, unit and integration tests, the Autobahn conformance suite.
test: lint unit conformance

lint:
	$(CARGO) fmt --check
	$(CARGO) clippy --all-targets -- -D warnings

unit:
	$(CARGO) test --all-targets

## RFC 6455 conformance: the Autobahn cases (sections 1-10) against /chatsocket.
conformance: release
	bash scripts/conformance.sh

clean:
	$(CARGO) clean
	rm -rf reports .venv
