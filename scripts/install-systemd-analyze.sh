#!/usr/bin/env bash
# Debian's systemd package for `systemd-analyze` (scripts/check-packaging.sh verifies the unit in
# deploy/systemd/ with it), only when it is not on PATH (`make packaging-deps`). Installing it
# boots nothing: in a container systemd is not PID 1, and verify needs no running systemd.
NO_RECOMMENDS=1 exec bash "$(dirname "${BASH_SOURCE[0]}")/install-service-package.sh" systemd systemd-analyze
