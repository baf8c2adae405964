#!/usr/bin/env bash
# Installs what building and testing need, only when it is missing, on Debian/Ubuntu:
#   build  protoc (protobuf-compiler), needed by etcd-client's code generation
#   test   the above, plus etcd (etcd-server) for the tests' real etcd and curl
# Runs apt-get as root, or through sudo when there is one.
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
