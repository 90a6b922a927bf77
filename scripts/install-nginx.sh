#!/usr/bin/env bash
# Debian's nginx for `make cluster` and its browser test (`make cluster-deps`), only when nginx is
# not installed (Debian puts it in /usr/sbin, which is not on every PATH: looked for there too);
# see install-service-package.sh.
exec bash "$(dirname "${BASH_SOURCE[0]}")/install-service-package.sh" nginx nginx /usr/sbin/nginx
