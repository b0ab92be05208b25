#!/usr/bin/env bash
# Instructions per request, counted by valgrind's callgrind (repeatable, whatever else the
# machine does): a pass-through GET and a create, for one or more brokergate binaries.
#
#   benches/load/instructions.sh [BIN ...]     # default: target/dist/brokergate
#
# Needs a finished `benches/load/run.sh` (its dist-built loadgen and mock broker, and the
# configs it wrote under target/load-run/) and valgrind. Each binary serves N1 then N2
# requests under callgrind; (total(N2) - total(N1)) / (N2 - N1) cancels the start-up and
# shutdown, leaving the cost of one request. Loopback only; every process is stopped.
set -euo pipefail
cd "$(dirname "$0")/../.."

RUN=target/load-run
LOADGEN=target/dist/examples/loadgen
BROKER=target/dist/examples/mock_v1_broker
ORIGIN_CONF=$PWD/$RUN/origin/nginx.conf
PORT=18095 ADMIN=18195
for f in "$LOADGEN" "$BROKER" "$ORIGIN_CONF" "$RUN/brokergate-pass/brokergate.toml"; do
  [ -e "$f" ] || { echo "instructions.sh: $f missing: run benches/load/run.sh first" >&2; exit 1; }
done
command -v valgrind >/dev/null || { echo "instructions.sh: needs valgrind" >&2; exit 1; }
[ $# -gt 0 ] || set -- target/dist/brokergate

WORK=$(mktemp -d)
PIDS=()
cleanup() { for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null || true; done; rm -rf "$WORK"; }
trap cleanup EXIT

wait_port() { for _ in $(seq 1 300); do (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null && return 0; sleep 0.2; done; return 1; }

/usr/sbin/nginx -e "$WORK/origin-error.log" -c "$ORIGIN_CONF" >/dev/null 2>&1 & PIDS+=($!)
"$BROKER" 127.0.0.1:18082 changeechotoken >/dev/null 2>&1 & PIDS+=($!)
wait_port 18081 && wait_port 18082

# An HS256 admin token for the harness's secret.
TOKEN=$(python3 - <<'EOF'
import base64, hashlib, hmac, json, time
b = lambda x: base64.urlsafe_b64encode(x).rstrip(b"=").decode()
h = b(json.dumps({"alg": "HS256", "typ": "JWT"}).encode())
p = b(json.dumps({"user_id": "u1", "email": "e@x", "scope": ["cloud_controller.admin"],
                  "aud": ["cloud_controller"], "exp": int(time.time()) + 7200}).encode())
print(f"{h}.{p}.{b(hmac.new(b'tokensecret', f'{h}.{p}'.encode(), hashlib.sha256).digest())}")
EOF
)

# Total instructions of one gateway run that served N requests of KIND.
total() {
  local bin=$1 kind=$2 n=$3
  local dir="$WORK/$kind-$n-$RANDOM"
  mkdir -p "$dir"
  sed -e "s#$PWD/$RUN/brokergate-pass#$dir#g" -e "s/18085/$PORT/; s/18185/$ADMIN/" \
    "$RUN/brokergate-pass/brokergate.toml" > "$dir/c.toml"
  RUST_LOG=warn valgrind --tool=callgrind --callgrind-out-file="$dir/cg.out" \
    "$bin" run -c "$dir/c.toml" >/dev/null 2>"$dir/err.log" &
  local pid=$!
  wait_port "$PORT"
  if [ "$kind" = get ]; then
    "$LOADGEN" count "127.0.0.1:$PORT" --requests "$n" --conns 4 --kind get --path /v2/info >/dev/null
  else
    "$LOADGEN" count "127.0.0.1:$PORT" --requests "$n" --conns 4 --kind cc --token "$TOKEN" \
      --prefix "i$n$RANDOM" >/dev/null
  fi
  kill -INT "$pid"; wait "$pid" || true
  grep -h '^summary:' "$dir"/cg.out* | head -1 | awk '{print $2}'
}

per_request() {
  local bin=$1 kind=$2 n1=$3 n2=$4
  local a b; a=$(total "$bin" "$kind" "$n1"); b=$(total "$bin" "$kind" "$n2")
  echo $(( (b - a) / (n2 - n1) ))
}

printf '%-50s %22s %22s\n' binary "pass-through GET" "create"
for bin in "$@"; do
  printf '%-50s %22s %22s\n' "$bin" "$(per_request "$bin" get 2000 12000)" "$(per_request "$bin" cc 500 2500)"
done
