# The two commands of README.md:
#   make run    build and start the API on the embedded store (REST :8080, gRPC :9090)
#   make test   install what the tests need, then every check CI runs
# and one that proves the first on a fresh machine (../shared/fresh-machine run-check):
#   make run-check  what `make run` does, then create and read back the README's `example` flow
# and one that `make test` runs, on its own:
#   make wasm-test  the portable core's tests under wasmtime, and the WASI validator
#                   target/wasm/flowpipe-validate.wasm (README, "WASI")
# and one kept out of `make test` because a release build takes minutes:
#   make lambda-size  the Lambda binary `bootstrap`, built as deployed, within its size budget
# and the long version of the partition scenarios that `make test` runs short (RELIABILITY.md):
#   make partition-test
CARGO ?= cargo
# Where scripts/ensure-tools.sh puts PyPI tools when the system Python refuses global installs.
export PATH := $(CURDIR)/target/tools/venv/bin:$(PATH)

.PHONY: run run-check test wasm-test partition-test lint check-architecture lambda-size

run:
	@scripts/ensure-tools.sh build
	$(CARGO) run --bin flow-api -- $(ARGS)

lambda-size:
	@scripts/ensure-tools.sh build
	@CARGO="$(CARGO)" scripts/lambda-size.sh

run-check:
	@scripts/ensure-tools.sh run-check
	@CARGO="$(CARGO)" scripts/run-check.sh

# wasm-test before the tests: tests/api/validate.rs runs the .wasm it builds.
test: lint
	@$(MAKE) --no-print-directory wasm-test
	$(CARGO) test --workspace --all-targets

# The partition scenarios with their faults held 20 s instead of 8 (needs root, as `make test`);
# each report is printed and kept in target/tmp/partition/.
partition-test:
	@scripts/ensure-tools.sh test
	FLOW_PARTITION_FULL=1 $(CARGO) test -p flowpipe-api --test partition -- --nocapture --test-threads=1

# flowpipe-core for wasm32-wasip1 (and wasip2 where the toolchain has it), its unit tests under
# wasmtime, and target/wasm/flowpipe-validate.wasm. Gets the toolchain itself (scripts/
# wasm-toolchain.sh), or fails saying why it cannot.
wasm-test:
	@scripts/wasm-test.sh

# Everything but the tests: formatting, lints (the Lambda build on its own too), docs, the SAM
# template and the layout's rules.
lint:
	@scripts/ensure-tools.sh test
	$(CARGO) fmt --all -- --check
	$(CARGO) clippy --workspace --all-targets -- -D warnings
	$(CARGO) clippy -p flowpipe-api --no-default-features --features lambda -- -D warnings
	RUSTDOCFLAGS="-D warnings" $(CARGO) doc --workspace --no-deps
	cfn-lint template.yaml
	@CARGO="$(CARGO)" scripts/check-architecture.sh
