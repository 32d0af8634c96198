#!/usr/bin/env bash
# Load comparison: jwtgate against the peers of ../shared/bench (HAProxy with
# jwt_verify, HAProxy and nginx TLS proxies) on this machine, with wrk over
# loopback. Prints the shared bench's median table (req/s, p50/p99/p99.9,
# ratios, proxy CPU µs per request). Never run by `cargo test` or CI.
#
#   benches/load.sh [load.sh options...] [TARGET...]
#   e.g. benches/load.sh -d 10 -r 3                 # every target, 3 interleaved reps
#        benches/load.sh -r 5 -b haproxy-jwt gateway gateway-none haproxy-jwt haproxy-tls
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
printf 'gateway  %s  env JWTGATE_LOG=warn JWTGATE_SECRET=$JWT_SECRET %q serve --config %q\n' \
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
"$BENCH/load.sh" "$@"
