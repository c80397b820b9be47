#!/usr/bin/env bash
# Install the Debian packages relctl's lab and tests need, only when something is missing.
set -euo pipefail
# chromium: headless, renders the HTML reports in a test (screenshot of the charts).
# postgresql: the tests start their own cluster on loopback (the shared PostgreSQL journal,
# PostgreSQL data items); python3-psycopg: the sample ledger in its PostgreSQL mode.
# openssl: a test makes the certificate relctl serve answers HTTPS with.
packages=(openssh-server openssh-client haproxy python3 python3-venv sqlite3 util-linux procps chromium postgresql python3-psycopg openssl)
missing=()
for pkg in "${packages[@]}"; do
  dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q "install ok installed" || missing+=("$pkg")
done
if ((${#missing[@]})); then
  echo "installing: ${missing[*]}"
  if [ "$(id -u)" -ne 0 ]; then SUDO=sudo; else SUDO=; fi
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi
# Installing the packages may start system daemons on machines with an init system;
# the lab never uses them and binds only its own loopback addresses.
