#!/bin/sh
# Debian packages the STAC API tests and `spectralearth serve --backend pgstac` need:
# PostgreSQL 15 + PostGIS 3 (pgstac) and Chromium + its driver (the browser test).
# Idempotent: does nothing when everything is already installed. Needs root (CI is).
set -eu
PKGS="postgresql-15 postgresql-15-postgis-3 chromium chromium-driver"
missing=""
for p in $PKGS; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing="$missing $p"
done
[ -z "$missing" ] && exit 0
if [ "$(id -u)" != 0 ]; then
    echo "missing Debian packages:$missing (run this script as root: $0)" >&2
    exit 1
fi
export DEBIAN_FRONTEND=noninteractive
apt-get -o DPkg::Lock::Timeout=600 update -qq
# shellcheck disable=SC2086
apt-get -o DPkg::Lock::Timeout=600 install -y -qq --no-install-recommends $missing
