#!/usr/bin/env bash
# Debian's Chromium and ChromeDriver, for the admin console's browser test (tests/web/): CI calls this
# before `make test`, as it installs podman. A machine that has both already is left as it is.
set -euo pipefail
if [ -x /usr/bin/chromium ] && [ -x /usr/bin/chromedriver ]; then
    exit 0
fi
if [ "$(id -u)" != 0 ] || ! command -v apt-get >/dev/null; then
    echo "install chromium and chromium-driver to run the console's browser test; it is skipped without them" >&2
    exit 0
fi
apt-get update -qq
DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends chromium chromium-driver >/dev/null
