#!/usr/bin/env bash
# The load harness, in one command (loopback only, bounded in time: ~8 minutes on 2 cores
# after the build):
#
#   benches/load/run.sh            # full run: writes benches/load/results.md and results.png
#   benches/load/run.sh --quick    # a ~1-minute smoke run of the same harness, written to
#                                  # target/load-run/quick/ (never over the committed results)
#
# It installs what a fresh Debian machine lacks (wrk, nginx-light with RUNLEVEL=1 so no
# nginx service starts, gnuplot-nox for the chart, cmake for pingora's build), builds the
# dist-profile binaries (brokergate, examples bare_proxy, mock_v1_broker, loadgen, load_harness),
# and runs target/dist/examples/load_harness. Knobs are environment variables, listed in
# benches/load/README.md (LOAD_SECONDS, LOAD_ROUNDS, LOAD_SKIP, ...).
set -euo pipefail

cd "$(dirname "$0")/../.."

if [ "${1:-}" = "--quick" ]; then
  export LOAD_SECONDS="${LOAD_SECONDS:-2}" LOAD_WARMUP="${LOAD_WARMUP:-1}" LOAD_ROUNDS="${LOAD_ROUNDS:-1}" LOAD_OPEN_ROUNDS="${LOAD_OPEN_ROUNDS:-1}"
  export LOAD_OPEN_SECONDS="${LOAD_OPEN_SECONDS:-2}" LOAD_MEM_CREATES="${LOAD_MEM_CREATES:-2000}"
  export LOAD_IDLE_CONNS="${LOAD_IDLE_CONNS:-200}" LOAD_OUT="${LOAD_OUT:-target/load-run/quick}"
elif [ $# -gt 0 ]; then
  echo "usage: benches/load/run.sh [--quick]" >&2
  exit 2
fi

need=()
command -v wrk >/dev/null 2>&1 || need+=(wrk)
command -v nginx >/dev/null 2>&1 || [ -x /usr/sbin/nginx ] || need+=(nginx-light)
command -v gnuplot >/dev/null 2>&1 || need+=(gnuplot-nox)
command -v cmake >/dev/null 2>&1 || need+=(cmake)
command -v taskset >/dev/null 2>&1 || need+=(util-linux)
if [ ${#need[@]} -gt 0 ]; then
  echo "run.sh: installing ${need[*]}" >&2
  sudo=""
  [ "$(id -u)" -eq 0 ] || sudo="sudo"
  $sudo apt-get update -qq
  # RUNLEVEL=1: Debian's policy-rc.d convention, so installing nginx does not start it.
  $sudo env RUNLEVEL=1 DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${need[@]}" >/dev/null
fi
export PATH="$PATH:/usr/sbin"

if [ "$(nproc)" -lt 2 ]; then
  echo "run.sh: needs 2 cores (load generator on core 0, proxy under test on core 1)" >&2
  exit 1
fi

# 1,000 idle connections plus upstream sockets need more than the usual 1024 descriptors.
ulimit -n 65536 2>/dev/null || ulimit -n "$(ulimit -Hn)" || true

# The `dist` profile (fat LTO, one codegen unit) is what deploy/Dockerfile ships.
echo "run.sh: building the dist-profile binaries" >&2
cargo build --profile dist --bin brokergate \
  --example bare_proxy --example mock_v1_broker --example loadgen --example load_harness

echo "run.sh: load average before the run: $(cut -d' ' -f1-3 /proc/loadavg)" >&2
# Bounded: the harness's own runs are time-bounded; this is a backstop.
exec timeout --signal=TERM --kill-after=30 3600 target/dist/examples/load_harness
