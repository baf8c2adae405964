# The two commands of README.md:
#   make run    build and start the API on the embedded store (REST :8080, gRPC :9090)
#   make test   install what the tests need, then every check CI runs
CARGO ?= cargo
# Where scripts/ensure-tools.sh puts PyPI tools when the system Python refuses global installs.
export PATH := $(CURDIR)/target/tools/venv/bin:$(PATH)

.PHONY: run test check-core lint unit-and-integration

run:
	@scripts/ensure-tools.sh build
	$(CARGO) run --bin flow-api -- $(ARGS)

test:
	@scripts/ensure-tools.sh test
	$(CARGO) fmt --all -- --check
	$(CARGO) clippy --all-targets -- -D warnings
	cfn-lint template.yaml
	@# The portable core builds without the server stack (wasm32-wasip1 readiness).
	$(CARGO) build --lib --no-default-features
	$(CARGO) test --lib --no-default-features
	$(CARGO) test --all-targets
