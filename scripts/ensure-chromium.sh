#!/usr/bin/env bash
# Debian's Chromium for the demo page's browser test (playwright-core drives it; its own
# browser download cannot work without the internet). Installs it once, if missing.
set -euo pipefail
[ -x /usr/bin/chromium ] && exit 0
echo "installing Debian's chromium for the browser test"
sudo=""
[ "$(id -u)" = 0 ] || sudo="sudo"
export DEBIAN_FRONTEND=noninteractive
$sudo apt-get install -y --no-install-recommends chromium \
  || { $sudo apt-get update && $sudo apt-get install -y --no-install-recommends chromium; }
