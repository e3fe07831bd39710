#!/bin/sh
# Installs the Debian packages frugal needs, when they are missing.
# Used by scripts/run-example and scripts/run-tests; safe to run again.
set -eu
packages="g++ cmake make pkg-config xtensor-dev libxsimd-dev doctest-dev libboost-dev zlib1g-dev libopenblas-dev dataset-fashion-mnist"
[ $# -gt 0 ] && packages="$packages $*"
missing=""
for p in $packages; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing="$missing $p"
done
if [ -n "$missing" ]; then
  echo "frugal: installing$missing"
  if [ "$(id -u)" -eq 0 ]; then sudo=""; else sudo="sudo"; fi
  $sudo apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends $missing >/dev/null
fi
