#!/usr/bin/env bash
# Debian's zbar-tools for its `zbarimg` (tests/qr_decode.rs has it decode the QR codes of
# src/qr.rs), only when `zbarimg` is not on PATH (`make qr-deps`). Without the package's
# Recommends; it has no service: see install-service-package.sh.
NO_RECOMMENDS=1 exec bash "$(dirname "${BASH_SOURCE[0]}")/install-service-package.sh" zbar-tools zbarimg
