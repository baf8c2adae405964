#!/usr/bin/env bash
# Installs what building and testing need, only when it is missing, on Debian/Ubuntu. Every tool
# and file that `make run` and `make test` use comes from here (README "Set-up" lists them):
#   build  protoc (protobuf-compiler) and the well-known .proto files it imports
#          (google/protobuf/*.proto, libprotobuf-dev): etcd-client's and our own code generation
#   test   the above, plus etcd (etcd-server) for the tests' real etcd, curl (the README
#          walk-through and `make run-check`), and from PyPI cargo-lambda (`cargo lambda watch`),
#          moto[server] (a local Secrets Manager) and cfn-lint (template.yaml)
# Each need is checked by what the build actually uses (a file, not only a binary), so a machine
# with `protoc` but without its include files still gets them. Runs apt-get as root, or through
# sudo when there is one. PyPI tools go where pip puts them, or, when the system Python refuses
# global installs (PEP 668), into target/tools/venv, which the Makefile puts on PATH.
set -euo pipefail

want=${1:-build}
root=$(cd "$(dirname "$0")/.." && pwd)
need_apt=()

# protoc finds the well-known types next to itself (../include) or in /usr/include.
protoc_includes() {
  local protoc
  protoc=$(command -v protoc 2>/dev/null) || return 1
  for dir in "$(dirname "$(readlink -f "$protoc")")/../include" /usr/include /usr/local/include; do
    [ -f "$dir/google/protobuf/descriptor.proto" ] && return 0
  done
  return 1
}
command -v protoc >/dev/null 2>&1 || need_apt+=(protobuf-compiler)
protoc_includes || need_apt+=(libprotobuf-dev)

if [ "$want" = test ] || [ "$want" = run-check ]; then
  command -v curl >/dev/null 2>&1 || need_apt+=(curl)
fi
if [ "$want" = test ]; then
  if [ -z "${ETCD_BIN:-}" ] && ! command -v etcd >/dev/null 2>&1 && [ ! -x /usr/bin/etcd ]; then
    need_apt+=(etcd-server)
  fi
fi

need_pip=()
if [ "$want" = test ]; then
  # Pinned to the versions CI runs, so that a new release (a new cfn-lint rule, say) cannot fail
  # `make test` on a fresh machine while CI stays green; a tool already on PATH is used as it is.
  command -v cargo-lambda >/dev/null 2>&1 || need_pip+=(cargo-lambda==1.9.2)
  command -v moto_server >/dev/null 2>&1 || need_pip+=('moto[server]==5.2.1')
  command -v cfn-lint >/dev/null 2>&1 || need_pip+=(cfn-lint==1.51.0)
  if [ ${#need_pip[@]} -gt 0 ]; then
    command -v python3 >/dev/null 2>&1 || need_apt+=(python3)
    # The venv fallback below needs ensurepip, which Debian ships apart from python3.
    python3 -c 'import ensurepip, venv' >/dev/null 2>&1 || need_apt+=(python3-venv)
    python3 -m pip --version >/dev/null 2>&1 || need_apt+=(python3-pip)
  fi
fi

if [ ${#need_apt[@]} -gt 0 ]; then
  echo "installing ${need_apt[*]} with apt-get" >&2
  sudo=""
  if [ "$(id -u)" != 0 ]; then
    command -v sudo >/dev/null 2>&1 || { echo "need root or sudo to install ${need_apt[*]}" >&2; exit 1; }
    sudo=sudo
  fi
  $sudo apt-get update -qq
  # etcd-server's package starts a system etcd on :2379 where there is an init system; tests use
  # their own, so stop it.
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends "${need_apt[@]}" >/dev/null
  if printf '%s\n' "${need_apt[@]}" | grep -qx etcd-server; then
    $sudo systemctl disable --now etcd >/dev/null 2>&1 || $sudo service etcd stop >/dev/null 2>&1 || true
  fi
  hash -r
fi
# Check what was promised, so a package that changed its contents fails here, not in a build.
command -v protoc >/dev/null 2>&1 || { echo "protoc is still missing after installing protobuf-compiler" >&2; exit 1; }
protoc_includes || { echo "google/protobuf/descriptor.proto is still missing after installing libprotobuf-dev" >&2; exit 1; }

if [ ${#need_pip[@]} -gt 0 ]; then
  echo "installing ${need_pip[*]} with pip" >&2
  venv="$root/target/tools/venv"
  if ! python3 -m pip install --quiet --disable-pip-version-check "${need_pip[@]}" 2>/dev/null; then
    echo "pip refused a global install; using the virtual environment $venv" >&2
    [ -x "$venv/bin/pip" ] || python3 -m venv "$venv"
    "$venv/bin/pip" install --quiet --disable-pip-version-check "${need_pip[@]}"
  fi
  hash -r
  for tool in cargo-lambda moto_server cfn-lint; do
    command -v "$tool" >/dev/null 2>&1 || [ -x "$venv/bin/$tool" ] || {
      echo "$tool is still missing after pip install; the tests need it" >&2
      exit 1
    }
  done
fi
