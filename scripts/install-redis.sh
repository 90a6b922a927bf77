#!/usr/bin/env bash
# Debian's redis-server for the Redis tests, `make cluster` and `make bench` (`make redis-deps`),
# only when `redis-server` is not on PATH; see install-service-package.sh.
exec bash "$(dirname "${BASH_SOURCE[0]}")/install-service-package.sh" redis-server redis-server
