#!/usr/bin/env bash
# Debian's prometheus package for its `promtool` (tests/metrics_promtool.rs runs `promtool check
# metrics` on /metrics), only when `promtool` is not on PATH (`make promtool-deps`). Without
# the package's Recommends (prometheus-node-exporter, another service); the prometheus service
# that installing may start is stopped again: see install-service-package.sh.
NO_RECOMMENDS=1 exec bash "$(dirname "${BASH_SOURCE[0]}")/install-service-package.sh" prometheus promtool
