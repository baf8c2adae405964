#!/usr/bin/env bash
# Lambda cold start of `bootstrap` (BENCHMARKS.md, "Lambda binary size and cold start"): builds
# the release binary as deployed (`cargo build --release --bin bootstrap`; the profile strips
# it), then scripts/cold_start.py starts it RUNS times as a fresh process against an emulated Lambda
# runtime API and a real etcd, both on 127.0.0.1, and prints init and first-response times, peak
# RSS and the binary's size, stripped and zipped.
#   scripts/cold-start.sh [RUNS]      (default 20)
# This measures the host's architecture (x86_64 here); template.yaml deploys arm64, which needs
# `cargo lambda build --release --arm64` and an arm64 machine (or Lambda) to time.
set -euo pipefail
cd "$(dirname "$0")/.."
runs=${1:-20}

scripts/ensure-tools.sh test   # protoc to build, etcd to run against
cargo build --release --bin bootstrap
exec python3 scripts/cold_start.py --binary target/release/bootstrap --runs "$runs"
