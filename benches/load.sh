#!/usr/bin/env bash
# Load comparison: jwtgate against the peers of ../shared/bench (HAProxy with
# jwt_verify, HAProxy and nginx TLS proxies) on this machine, with wrk over
# loopback. Prints the shared bench's median table (req/s, p50/p99/p99.9,
# ratios, proxy CPU µs per request). Never run by `cargo test` or CI.
#
#   benches/load.sh [load.sh options...] [TARGET...]
#   benches/load.sh --handshake [SECS]                # full-handshake CPU: gateway vs nginx vs HAProxy
#   e.g. benches/load.sh -d 10 -r 3                 # every target, 3 interleaved reps
#        benches/load.sh -r 5 -b haproxy-jwt gateway gateway-none haproxy-jwt haproxy-tls
#
# After the shared table (ratios to nginx-tls) the same runs are summarised again with
# haproxy-jwt and haproxy-tls as the baseline, so every ratio the targets need comes
# from one set of runs; the load average before and after is printed with them.
#
# --handshake: `openssl s_time -new` (TLS 1.3, X25519, no resumption: every connection
# is a full handshake, then closed) against each TLS server in turn for SECS (default
# 10) seconds; prints handshakes/s and the server's CPU time (user + sys, all its
# processes) per handshake. openssl runs on $LOAD_CPUS, one connection at a time.
#
# Needs: apt-get install -y haproxy nginx wrk nghttp2-client openssl curl socat; python3, perl.
# The gateway runs with `workers = 1`, pinned like the peers to $SERVER_CPUS (core 0),
# wrk on $LOAD_CPUS (core 1). Like the peers, it writes no access log (JWTGATE_LOG=warn).
# Targets added to the shared set:
#   gateway       TLS + HS256 verification + proxy            (route "/", auth = required)
#   gateway-none  the same gateway, route "/none", auth = "none" (verification share)
#   gateway-401   bad signature → 401
# Everything listens on 127.0.0.1; every run is bounded (wrk -d ≤ 15 s under timeout).
# The shared scripts are copied to $RUN/jwtgate-bench and the copy gets the gateway's lines,
# so ../shared/bench itself is not modified. Services are stopped on exit.
set -euo pipefail
HERE=$(cd "$(dirname "$0")/.." && pwd)
SHARED=${SHARED_BENCH:-$(cd "$HERE/../shared/bench" 2>/dev/null && pwd || echo /work/shared/bench)}
. "$SHARED/env.sh"
export BENCH="$RUN/jwtgate-bench"

cargo build --release --manifest-path "$HERE/Cargo.toml" >&2
BIN="$HERE/target/release/jwtgate"

rm -rf "$BENCH"; mkdir -p "$BENCH" "$RUN"
cp -r "$SHARED"/. "$BENCH"/
CONF="$RUN/jwtgate-bench.toml"
cat > "$CONF" <<EOF
[server]
listen = "127.0.0.1:$GATEWAY_PORT"
tls_cert = "$RUN/cert.crt"
tls_key = "$RUN/cert.key"
workers = 1
server_timing = true

[jwt]
leeway = "30s"

[[jwt.keys]]
alg = "HS256"
secret_env = "JWTGATE_SECRET"

[[upstream]]
name = "up"
url = "http://127.0.0.1:$UPSTREAM_PORT"

[[route]]
path = "/none"
upstream = "up"
auth = "none"

[[route]]
path = "/"
upstream = "up"
EOF
printf 'gateway  %s  env JWTGATE_LOG=warn JWTGATE_SECRET=$JWT_SECRET %q serve --dev-cert --config %q\n' \
  "$GATEWAY_PORT" "$BIN" "$CONF" >> "$BENCH/services.tsv"
cat >> "$BENCH/targets.tsv" <<EOF
gateway         https://127.0.0.1:$GATEWAY_PORT/      valid   200  gateway,upstream
gateway-none    https://127.0.0.1:$GATEWAY_PORT/none  valid   200  gateway,upstream
gateway-401     https://127.0.0.1:$GATEWAY_PORT/      badsig  401  gateway,upstream
EOF

cleanup() { "$BENCH/stop.sh" >/dev/null 2>&1 || true; }
trap cleanup EXIT
"$BENCH/start.sh"
"$BENCH/check.sh" haproxy-jwt gateway

# CPU ticks (user + sys) of a service's pid and all its descendants.
tree_ticks() {
  local pid=$1 t c
  [[ -r /proc/$pid/stat ]] || { echo 0; return; }
  t=$(awk '{sub(/^.*\) /, ""); print $12 + $13}' "/proc/$pid/stat")
  for c in $(cat /proc/"$pid"/task/*/children 2>/dev/null); do t=$((t + $(tree_ticks "$c"))); done
  echo "$t"
}

if [[ ${1:-} == --handshake ]]; then
  secs=${2:-10}
  echo "load average before: $(cut -d' ' -f1-3 /proc/loadavg)"
  printf '%-10s %8s %12s %16s\n' server handshakes 'per second' 'server CPU us/hs'
  for svc in nginx_tls:$NGINX_TLS_PORT haproxy1:$HAP_TLS_PORT gateway:$GATEWAY_PORT; do
    name=${svc%%:*} port=${svc##*:}
    pid=$(cat "$RUN/$name.pid")
    t0=$(tree_ticks "$pid")
    out=$(taskset -c "$LOAD_CPUS" timeout $((secs + 10)) openssl s_time -connect "127.0.0.1:$port" \
          -new -time "$secs" 2>&1 || true)
    t1=$(tree_ticks "$pid")
    n=$(grep -oE '^[0-9]+ connections in' <<< "$out" | head -1 | cut -d' ' -f1)
    if [[ -z $n || $n == 0 ]]; then echo "$name: no handshakes: $out" >&2; continue; fi
    awk -v name="$name" -v n="$n" -v s="$secs" -v t=$((t1 - t0)) -v hz="$(getconf CLK_TCK)" \
      'BEGIN { printf "%-10s %8d %12.0f %16.0f\n", name, n, n / s, t / hz * 1e6 / n }'
  done
  echo "load average after: $(cut -d' ' -f1-3 /proc/loadavg)"
  exit 0
fi

OUT=""
args=("$@")
for ((i = 0; i < ${#args[@]}; i++)); do [[ ${args[$i]} == -o ]] && OUT=${args[$((i + 1))]:-}; done
if [[ -z $OUT ]]; then OUT="$RUN/results/jwtgate-$(date +%Y%m%d-%H%M%S)"; args=(-o "$OUT" "${args[@]}"); fi
echo "load average before: $(cut -d' ' -f1-3 /proc/loadavg)"
"$BENCH/load.sh" "${args[@]}"
echo "load average after: $(cut -d' ' -f1-3 /proc/loadavg)"
for base in haproxy-jwt haproxy-tls; do
  if grep -q "	$base	" "$OUT/runs.tsv"; then
    echo; echo "same runs, ratios to $base:"
    python3 "$BENCH/summarize.py" "$OUT/runs.tsv" "$base" | head -n -4
  fi
done
