#!/usr/bin/env bash
# The rules the workspace layout must keep true (README, "Development"), checked on every
# `make test`. Each failure names the rule and what broke it.
#   1. flowpipe-core has no runtime, sockets, storage backend or transport among its
#      dependencies (it builds for wasm32-wasip1; `make wasm-test` runs its tests there), and its
#      library touches no files, sockets, processes, threads, environment or clock of std's: only
#      its thin binary flowpipe-validate (src/bin/) reads files and standard input.
#   2. The Lambda function builds without the local server's dependencies, and the `bootstrap`
#      binary links no gRPC server, reflection, health service, redb, clap, reqwest or
#      hdrhistogram.
#   3. Every write of the core goes through the one compare-and-swap loop (cas.rs): any other
#      transaction the core sends is a read-only `Txn::read`.
#   4. Errors are rendered once per transport (crates/flowpipe-api/src/error.rs), and no error is
#      recognised by its text.
#   5. No `#[path]` modules.
set -euo pipefail
cd "$(dirname "$0")/.."
: "${CARGO:=cargo}"
failed=0
fail() { echo "check-architecture: $*" >&2; failed=1; }

# 1. The portable core's dependency tree.
core_deps=$($CARGO tree -p flowpipe-core -e normal --prefix none --format '{p}' | awk '{print $1}' | sort -u)
for banned in tokio mio hyper tonic axum etcd-client redb; do
  grep -qx "$banned" <<<"$core_deps" && fail "flowpipe-core depends on $banned"
done
grep -q '^aws-' <<<"$core_deps" && fail "flowpipe-core depends on an AWS crate"
grep -rnE 'std::(fs|net|process|thread|env)\b|std::\{[^}]*\b(fs|net|process|thread|env)\b|stdin\(|SystemTime|Instant::|Utc::now' \
  crates/flowpipe-core/src --include=*.rs | grep -v '^crates/flowpipe-core/src/bin/' \
  && fail "flowpipe-core's library reaches the world by itself (files, sockets, processes, threads, env, clock)"

# 2. The Lambda function: what it needs (feature `lambda` alone)...
lambda_deps=$($CARGO tree -p flowpipe-api --no-default-features --features lambda -e normal \
  --prefix none --format '{p}' | awk '{print $1}' | sort -u)
for banned in clap redb tonic-health tonic-reflection reqwest hdrhistogram axum-server; do
  grep -qx "$banned" <<<"$lambda_deps" && fail "the Lambda build (feature lambda) depends on $banned"
done
# ...and what the binary SAM deploys links (built with the default features, as `cargo lambda
# build --bin bootstrap` does; the linker keeps only what is reachable).
$CARGO build -q -p flowpipe-api --bin bootstrap
bootstrap=$($CARGO metadata --format-version 1 --no-deps | sed -n 's/.*"target_directory":"\([^"]*\)".*/\1/p')/debug/bootstrap
symbols=$(nm -C "$bootstrap" 2>/dev/null | awk '{ $1=""; $2=""; print }')
[ -n "$symbols" ] || fail "no symbols read from $bootstrap (is nm installed?)"
for banned in 'tonic::transport::server' 'flow_service_server::FlowServiceServer' \
  'tonic_reflection::' 'tonic_health::' 'redb::' 'clap_builder::' 'reqwest::' 'hdrhistogram::'; do
  grep -qF "$banned" <<<"$symbols" && fail "bootstrap links $banned"
done

# 3. Writes go through cas.rs: elsewhere in the core, `.txn(` is only ever a `Txn::read(`.
for f in $(grep -rl '\.txn(' crates/flowpipe-core/src | grep -v -e '/cas\.rs$' -e '/kv\.rs$'); do
  perl -0777 -ne 'while (/\.txn\(\s*(?!Txn::read\()/g) { exit 1 }' "$f" \
    || fail "$f sends a transaction that is not Txn::read outside the CAS loop (cas.rs)"
done

# 4. One rendering per transport, and no error matched by its text.
grep -rn 'impl IntoResponse for\|tonic::Status::with_error_details\|Status::new(' \
  crates/flowpipe-api/src --include=*.rs | grep -v '^crates/flowpipe-api/src/error.rs:' \
  && fail "an error is rendered outside crates/flowpipe-api/src/error.rs"
# etcd's own errors are the exception: etcd defines them by their text (rpctypes), in one place.
grep -rnE '(reason|message)\(\)\s*==|\.reason\s*==|message\(\)\.(contains|starts_with)|to_string\(\)\.(contains|starts_with)' \
  crates/*/src --include=*.rs | grep -v -e 'assert' -e '^crates/flowpipe-store/src/etcd/mod.rs:' \
  && fail "an error is recognised by its text"

# 5. No #[path] modules.
grep -rn '#\[path' crates --include=*.rs && fail "a module is included with #[path]"

[ "$failed" = 0 ] && echo "check-architecture: ok"
exit "$failed"
