#!/usr/bin/env bash
# What the reverse-proxy tests need (`make proxy-deps`), each from Debian's apt and only when
# missing: openssl (a self-signed certificate made at test time), nginx (deploy/nginx/livevote.conf
# in front of livevote, e2e/tests/8-proxy) and caddy (`caddy validate` of deploy/caddy/Caddyfile).
# The system services the nginx and caddy packages start are stopped again (the tests run their
# own nginx by pid; caddy only validates); see install-service-package.sh.
set -euo pipefail
here="$(dirname "${BASH_SOURCE[0]}")"
bash "$here/install-service-package.sh" openssl openssl
bash "$here/install-service-package.sh" nginx nginx /usr/sbin/nginx
bash "$here/install-service-package.sh" caddy caddy /usr/bin/caddy
