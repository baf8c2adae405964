#!/usr/bin/env bash
# Installs what building and testing need, only when it is missing, on Debian/Ubuntu:
#   build  protoc (protobuf-compiler), needed by etcd-client's code generation
#   test   the above, plus etcd (etcd-server) for the tests' real etcd and curl, and from PyPI
#          cargo-lambda (`cargo lambda watch`), moto[server] (a local Secrets Manager) and
#          cfn-lint (template.yaml), for the Lambda tests and the SAM template check
# Runs apt-get as root, or through sudo when there is one. PyPI tools go where pip puts them, or,
# when the system Python refuses global installs (PEP 668), into target/tools/venv, which the
# Makefile puts on PATH.
set -euo pipefail

need_apt=()
want=${1:-build}

command -v protoc >/dev/null 2>&1 || need_apt+=(protobuf-compiler)
if [ "$want" = test ]; then
  # The README walk-through test runs the documented curl commands.
  command -v curl >/dev/null 2>&1 || need_apt+=(curl)
  if [ -z "${ETCD_BIN:-}" ] && ! command -v etcd >/dev/null 2>&1 && [ ! -x /usr/bin/etcd ]; then
    need_apt+=(etcd-server)
  fi
fi

need_pip=()
if [ "$want" = test ]; then
  command -v cargo-lambda >/dev/null 2>&1 || need_pip+=(cargo-lambda)
  command -v moto_server >/dev/null 2>&1 || need_pip+=('moto[server]')
  command -v cfn-lint >/dev/null 2>&1 || need_pip+=(cfn-lint)
  if [ ${#need_pip[@]} -gt 0 ] && ! command -v python3 >/dev/null 2>&1; then
    need_apt+=(python3 python3-venv python3-pip)
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
  # etcd-server's package starts a system etcd on :2379; tests use their own, so stop it.
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends "${need_apt[@]}" >/dev/null
  if printf '%s\n' "${need_apt[@]}" | grep -qx etcd-server; then
    $sudo systemctl disable --now etcd >/dev/null 2>&1 || $sudo service etcd stop >/dev/null 2>&1 || true
  fi
fi

if [ ${#need_pip[@]} -gt 0 ]; then
  echo "installing ${need_pip[*]} with pip" >&2
  if ! python3 -m pip install --quiet --disable-pip-version-check "${need_pip[@]}"; then
    venv="$(cd "$(dirname "$0")/.." && pwd)/target/tools/venv"
    echo "pip refused a global install; using the virtual environment $venv" >&2
    [ -x "$venv/bin/pip" ] || python3 -m venv "$venv"
    "$venv/bin/pip" install --quiet --disable-pip-version-check "${need_pip[@]}"
  fi
  hash -r
  for tool in cargo-lambda moto_server cfn-lint; do
    command -v "$tool" >/dev/null 2>&1 || [ -x "${venv:-/nonexistent}/bin/$tool" ] || {
      echo "$tool is still missing after pip install; the tests need it" >&2
      exit 1
    }
  done
fi
