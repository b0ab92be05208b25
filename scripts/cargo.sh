#!/usr/bin/env bash
# Runs cargo after installing what a fresh Debian machine lacks for brokergate's build:
# cmake (pingora's zlib-ng build script needs it). Usage: scripts/cargo.sh <cargo args...>
set -euo pipefail

need=()
command -v cmake >/dev/null 2>&1 || need+=(cmake)
if [ ${#need[@]} -gt 0 ]; then
  echo "scripts/cargo.sh: installing ${need[*]} (needed to build pingora)" >&2
  sudo=""
  [ "$(id -u)" -eq 0 ] || sudo="sudo"
  $sudo apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq "${need[@]}" >/dev/null
fi

cd "$(dirname "$0")/.."
exec cargo "$@"
