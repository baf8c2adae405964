#!/usr/bin/env bash
# The Lambda binary's size budget (issue 11; BENCHMARKS.md, "Lambda binary size and cold start"):
# builds `bootstrap` as deployed (`cargo build --release --bin bootstrap`, the profile strips it)
# and fails when it is larger than the budget, so the size cannot grow unnoticed.
#   scripts/lambda-size.sh            (or `make lambda-size`)
#   LAMBDA_SIZE_BUDGET=<bytes> scripts/lambda-size.sh
# Not part of `make test`: a release build with LTO and one codegen unit takes 5 to 15 minutes
# on two cores. It measures the host's architecture (x86_64 here); template.yaml deploys arm64.
set -euo pipefail
cd "$(dirname "$0")/.."
: "${CARGO:=cargo}"
# Issue 11's target: 8 MiB.
budget=${LAMBDA_SIZE_BUDGET:-8388608}

$CARGO build --release --bin bootstrap
bin=$($CARGO metadata --format-version 1 --no-deps | sed -n 's/.*"target_directory":"\([^"]*\)".*/\1/p')/release/bootstrap
size=$(stat -c %s "$bin")
mib=$(awk -v s="$size" 'BEGIN { printf "%.2f", s / 1048576 }')
if [ "$size" -gt "$budget" ]; then
  echo "lambda-size: bootstrap is $size bytes ($mib MiB), over the budget of $budget bytes by $((size - budget))" >&2
  exit 1
fi
echo "lambda-size: bootstrap is $size bytes ($mib MiB), within the budget of $budget bytes ($((budget - size)) to spare)"
