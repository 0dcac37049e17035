#!/usr/bin/env bash
# Installs what the browser end-to-end tests need, only when it is missing:
# Debian's chromium (driven by playwright-core, no browser download), two font
# packages for readable screenshots, and the npm packages pinned in
# e2e/package-lock.json (playwright-core; axe-core for the accessibility checks).
# Safe to run on every CI job; a no-op when all is present.
# Usage (from anywhere): e2e/install.sh   (needs root for apt-get)
set -euo pipefail
cd "$(dirname "$0")"

export DEBIAN_FRONTEND=noninteractive
pkgs=""
for p in chromium fonts-liberation fonts-noto-color-emoji; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'ok installed' || pkgs="$pkgs $p"
done
if [ -n "$pkgs" ]; then
  echo "e2e/install.sh: installing$pkgs" >&2
  apt-get update -qq
  # shellcheck disable=SC2086 # word splitting of the package list is intended
  apt-get install -y -qq --no-install-recommends $pkgs >/dev/null
fi
# Debian replaces chromium with security updates; log the version so a
# breakage against the pinned playwright-core can be traced.
chromium --version 2>/dev/null || true

node -e 'process.exit(+process.versions.node.split(".")[0] >= 20 ? 0 : 1)' \
  || { echo "e2e/install.sh: node >= 20 is required by playwright-core 1.65" >&2; exit 1; }
if [ ! -f node_modules/playwright-core/package.json ] || [ ! -f node_modules/axe-core/axe.min.js ]; then
  npm ci --no-audit --no-fund --loglevel=error
fi
