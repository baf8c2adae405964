#!/usr/bin/env bash
# `make run-check`: what `make run` does, proven end to end. Builds and starts the API on the
# embedded store (as `make run`, on its default ports, with a throwaway data directory), waits for
# GET /readyz, creates the README's `example` flow with curl, reads it back, then stops the server
# with SIGTERM and requires a clean exit. Exit 0 only if every step worked.
set -euo pipefail
cd "$(dirname "$0")/.."
: "${CARGO:=cargo}"
http=${RUN_CHECK_HTTP:-127.0.0.1:8080}
grpc=${RUN_CHECK_GRPC:-127.0.0.1:9090}

data=$(mktemp -d)
log=$data/server.log
pid=
cleanup() {
  [ -n "$pid" ] && kill "$pid" 2>/dev/null || true
  rm -rf "$data"
}
trap cleanup EXIT
fail() { echo "run-check: $*" >&2; echo "--- server log" >&2; cat "$log" >&2 || true; exit 1; }

# Build first, so the wait below is for the server, not the compiler.
$CARGO build --bin flow-api
$CARGO run --bin flow-api -- --http-addr "$http" --grpc-addr "$grpc" --data-dir "$data/store" >"$log" 2>&1 &
pid=$!

for _ in $(seq 1 300); do
  curl -fsS "http://$http/readyz" >/dev/null 2>&1 && break
  kill -0 "$pid" 2>/dev/null || fail "the server exited before it was ready"
  sleep 0.1
done
curl -fsS "http://$http/readyz" >/dev/null || fail "GET /readyz did not answer 200 within 30 s"

# The README's first request, exactly.
created=$(curl -fsS -X POST "http://$http/v1/flows" -H 'Content-Type: application/json' \
  -d '{"name":"example","mode":"JOB","queues":[],"stages":[]}') || fail "POST /v1/flows failed"
echo "created: $created"
got=$(curl -fsS "http://$http/v1/flows/example") || fail "GET /v1/flows/example failed"
echo "read back: $got"
for want in '"name":"example"' '"version":"1"' '"mode":"EXECUTION_MODE_JOB"'; do
  grep -qF "$want" <<<"${got// /}" || fail "GET /v1/flows/example lacks $want"
done

kill -TERM "$pid"
rc=0; wait "$pid" || rc=$?
pid=
[ "$rc" = 0 ] || fail "the server exited with $rc after SIGTERM"
echo "run-check: ok"
