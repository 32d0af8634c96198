#!/usr/bin/env bash
# Soak: mixed valid, invalid and hostile traffic against a real jwtgate on
# loopback for SECONDS (default 180) while the upstream restarts every 20 s.
# Prints requests, status counts, 5xx other than the intended 502/504, and
# the gateway's RSS at start and end. Loopback only; not part of cargo test.
#
#   scripts/soak.sh [SECONDS]
#   JWTGATE_BIN=target/debug/jwtgate scripts/soak.sh 120   # skip the release build
#
# Needs curl (with HTTP/2) and python3.
set -euo pipefail
cd "$(dirname "$0")/.."

SECONDS_TOTAL=${1:-180}
BIN=${JWTGATE_BIN:-target/release/jwtgate}
if [[ -z ${JWTGATE_BIN:-} ]]; then cargo build --release --quiet; fi

WORK=$(mktemp -d)
PIDS=()
cleanup() {
  for pid in "${PIDS[@]}"; do kill "$pid" 2>/dev/null || true; done
  [[ -n ${UP_PID:-} ]] && kill "$UP_PID" 2>/dev/null || true
  rm -rf "$WORK"
}
trap cleanup EXIT

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
GW_PORT=$(free_port)
UP_PORT=$(free_port)
export SOAK_SECRET=soak-secret-0123456789abcdef-0123456789

# A keep-alive HTTP/1.1 upstream that closes idle connections after 2 s.
cat > "$WORK/upstream.py" <<'PY'
import sys, http.server, socketserver
class H(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    timeout = 2
    def _answer(self):
        n = int(self.headers.get("content-length") or 0)
        if n: self.rfile.read(n)
        body = b"ok"
        self.send_response(200)
        self.send_header("content-length", str(len(body)))
        self.end_headers()
        if self.command != "HEAD": self.wfile.write(body)
    do_GET = do_POST = do_PUT = do_DELETE = do_HEAD = do_OPTIONS = do_PATCH = _answer
    def log_message(self, *a): pass
class S(socketserver.ThreadingMixIn, http.server.HTTPServer):
    daemon_threads = True
    allow_reuse_address = True
S(("127.0.0.1", int(sys.argv[1])), H).serve_forever()
PY
start_upstream() { python3 "$WORK/upstream.py" "$UP_PORT" & UP_PID=$!; }

cat > "$WORK/jwtgate.toml" <<TOML
[server]
listen = "127.0.0.1:$GW_PORT"
tls_cert = "$WORK/server.crt"
tls_key = "$WORK/server.key"
header_read_timeout = "2s"
max_body_bytes = 65536
[jwt]
[[jwt.keys]]
kid = "k1"
alg = "HS256"
secret_env = "SOAK_SECRET"
[[upstream]]
name = "app"
url = "http://127.0.0.1:$UP_PORT"
timeout = "2s"
connect_timeout = "1s"
[[route]]
path = "/public"
upstream = "app"
auth = "none"
[[route]]
path = "/admin"
upstream = "app"
roles = ["admin"]
[[route]]
path = "/"
upstream = "app"
TOML

start_upstream
JWTGATE_LOG=error "$BIN" serve --dev-cert --config "$WORK/jwtgate.toml" 2>"$WORK/gateway.log" &
GW_PID=$!
PIDS+=("$GW_PID")
for _ in $(seq 50); do
  curl -s -o /dev/null --cacert "$WORK/ca.crt" "https://localhost:$GW_PORT/public/up" && break
  sleep 0.2
done
RSS_START=$(ps -o rss= -p "$GW_PID" | tr -d ' ')

USER_TOKEN=$("$BIN" token mint --secret-env SOAK_SECRET --kid k1 --claim sub=42 --claim role=user --ttl 1h)
ADMIN_TOKEN=$("$BIN" token mint --secret-env SOAK_SECRET --kid k1 --claim sub=1 --claim role=admin --ttl 1h)
EXPIRED=$("$BIN" token mint --secret-env SOAK_SECRET --kid k1 --claim sub=42 --ttl 0s)
NONE_TOKEN="eyJhbGciOiJub25lIn0.$(echo "$USER_TOKEN" | cut -d. -f2)."
FORGED="$(echo "$USER_TOKEN" | cut -d. -f1-2).AAAA$(echo "$USER_TOKEN" | cut -d. -f3 | cut -c5-)"
BIG=$(head -c 20000 /dev/zero | tr '\0' a)
LONG=$(head -c 9000 /dev/zero | tr '\0' b)
BODY="$WORK/body"; head -c 100000 /dev/zero > "$BODY"
B="https://localhost:$GW_PORT"

# One batch: each block is one request with its own options (curl applies
# options per `next` block); curl runs them in parallel.
req() { # req PROTO PATH [extra config lines...]
  local proto=$1 path=$2; shift 2
  printf 'next\nsilent\ncacert = "%s"\noutput = "/dev/null"\nmax-time = 10\n' "$WORK/ca.crt"
  printf '%s\n' 'write-out = "%{http_code} %{method} %{url} h%{http_version} exit=%{exitcode}\n"' "$proto" "url = \"$B$path\""
  for line in "$@"; do printf '%s\n' "$line"; done
}
bearer() { printf 'header = "Authorization: Bearer %s"' "$1"; }
{
  for proto in --http1.1 --http2; do
    for _ in 1 2 3 4 5 6 7 8; do
      req "$proto" /orders "$(bearer "$USER_TOKEN")"
      req "$proto" /admin/x "$(bearer "$ADMIN_TOKEN")"
      req "$proto" "/public/x?a=1"
    done
    req "$proto" /orders
    req "$proto" /admin/x "$(bearer "$USER_TOKEN")"
    for t in "$EXPIRED" "$NONE_TOKEN" "$FORGED" "garbage" "a.b.c.d.e"; do
      req "$proto" /orders "$(bearer "$t")"
    done
    req "$proto" /orders 'header = "Authorization: Basic dXNlcjpwYXNz"'
    req "$proto" /orders "$(bearer "$USER_TOKEN")" "header = \"authorization: Bearer $USER_TOKEN\""
    req "$proto" /public/../admin/x path-as-is "$(bearer "$USER_TOKEN")"
    req "$proto" /admin%2fx
    req "$proto" /a%00b
    req "$proto" "/public/$LONG"
    req "$proto" /public/x "header = \"X-Big: $BIG\""
    req "$proto" /public/x 'header = "X-User-Id: 0"' 'header = "X_Role: admin"'
    req "$proto" /public/upload "data-binary = \"@$BODY\""
  done
} > "$WORK/batch.curl"

STATUS="$WORK/status"
: > "$STATUS"
END=$((SECONDS + SECONDS_TOTAL))
NEXT_RESTART=$((SECONDS + 20))
RESTARTS=0
while (( SECONDS < END )); do
  if (( SECONDS >= NEXT_RESTART )); then
    kill "$UP_PID" 2>/dev/null || true; wait "$UP_PID" 2>/dev/null || true
    # Traffic continues against the dead upstream for 2 s: 502s are intended.
    curl --parallel --parallel-max 16 -K "$WORK/batch.curl" >> "$STATUS" 2>/dev/null || true
    sleep 2
    start_upstream
    RESTARTS=$((RESTARTS + 1))
    NEXT_RESTART=$((SECONDS + 20))
  fi
  curl --parallel --parallel-max 16 -K "$WORK/batch.curl" >> "$STATUS" 2>/dev/null || true
done
# Slow-header clients, then a last check that the gateway still answers.
SLOW=()
if command -v openssl >/dev/null; then
  for _ in $(seq 20); do
    (printf 'GET /public/x HTTP/1.1\r\nHost: x\r\n'; sleep 4) |
      timeout 6 openssl s_client -quiet -connect "127.0.0.1:$GW_PORT" >/dev/null 2>&1 &
    SLOW+=("$!")
  done
  sleep 3
fi
FINAL=$(curl -s -o /dev/null -w '%{http_code}' --cacert "$WORK/ca.crt" "$B/public/final" || echo 000)
for pid in "${SLOW[@]}"; do wait "$pid" 2>/dev/null || true; done
RSS_END=$(ps -o rss= -p "$GW_PID" | tr -d ' ' || echo gone)
ALIVE=$(kill -0 "$GW_PID" 2>/dev/null && echo yes || echo no)

# Lines are "status method url"; long URLs are shortened for the summary.
awk '{print $1}' "$STATUS" > "$STATUS.codes"
TOTAL=$(wc -l < "$STATUS")
echo "soak: ${SECONDS_TOTAL}s, upstream restarts: $RESTARTS, gateway alive: $ALIVE, final request: $FINAL"
echo "requests: $TOTAL"
echo "status counts:"; sort "$STATUS.codes" | uniq -c | sort -rn | sed 's/^/  /'
UNEXPECTED=$(grep -E '^5' "$STATUS.codes" | grep -vcE '^(502|504)$' || true)
echo "5xx other than 502/504: $UNEXPECTED"
echo "no answer (000): $(grep -c '^000$' "$STATUS.codes" || true)"
grep '^000 ' "$STATUS" | awk '{print "  " $2 " " substr($3, 1, 60) " " $4 " " $5}' | sed -E "s#https://localhost:$GW_PORT##" | sort | uniq -c
echo "gateway RSS: start ${RSS_START} KiB, end ${RSS_END} KiB"
[[ $ALIVE == yes && $UNEXPECTED == 0 ]]
