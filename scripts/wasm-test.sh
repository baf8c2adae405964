#!/usr/bin/env bash
# wasm-test.sh: what `make wasm-test` does (and `make test` before `cargo test`):
#   1. makes a WASI toolchain and runner available (scripts/wasm-toolchain.sh: the rustup target,
#      else std built from Debian's rust-src, else a Debian root; it fails loudly when none is
#      possible, and so does this);
#   2. runs flowpipe-core's unit tests (the library's and flowpipe-validate's) for wasm32-wasip1
#      under wasmtime, printing cargo's `test result:` lines;
#   3. builds flowpipe-validate for wasm32-wasip1 in release and leaves it at
#      target/wasm/flowpipe-validate.wasm, where flowpipe-api's tests (tests/api/validate.rs)
#      compare it with the server, and prints its size;
#   4. when the toolchain has wasm32-wasip2, runs the same unit tests there too (each test binary
#      is then a WASI 0.2 component); otherwise says why not.
# Cold (nothing under target/ yet) this builds std three times (wasip1 debug and release, wasip2),
# minutes; warm it takes seconds.
set -euo pipefail
cd "$(dirname "$0")/.."
say() { echo "wasm-test: $*" >&2; }

# The core's build script runs protoc (the contract's code generation), as for the host.
scripts/ensure-tools.sh build
scripts/wasm-toolchain.sh -q
wasm_env=target/wasm/env.sh
say "$(sed -n '1s/^# Written by scripts\/wasm-toolchain.sh: //p' "$wasm_env")"
# Read in a subshell: env.sh's variables are for wasm builds only (build-std breaks host builds).
wasip2=$(. "$wasm_env" && echo "$WASM_WASIP2")

scripts/wasm-cargo test -p flowpipe-core --target wasm32-wasip1 --lib --bins

# The release .wasm; its path as cargo names it (the target dir differs per toolchain).
wasm=$(scripts/wasm-cargo build -p flowpipe-core --target wasm32-wasip1 --release \
  --bin flowpipe-validate --message-format=json-render-diagnostics \
  | sed -n 's/.*"executable":"\([^"]*flowpipe-validate\.wasm\)".*/\1/p' | tail -1)
[ -f "$wasm" ] || { say "cargo built no flowpipe-validate.wasm"; exit 1; }
# Copied, never linked: the copy's time says when this ran (tests/api/validate.rs compares it
# with the sources').
cp "$wasm" target/wasm/flowpipe-validate.wasm.tmp
mv target/wasm/flowpipe-validate.wasm.tmp target/wasm/flowpipe-validate.wasm
say "target/wasm/flowpipe-validate.wasm: $(wc -c <target/wasm/flowpipe-validate.wasm) bytes," \
  "$(gzip -9 -c target/wasm/flowpipe-validate.wasm | wc -c) gzip'd"

if [ "$wasip2" = yes ]; then
  scripts/wasm-cargo test -p flowpipe-core --target wasm32-wasip2 --lib --bins
else
  say "wasm32-wasip2 not built: ${wasip2#no: }"
fi
