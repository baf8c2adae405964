#!/usr/bin/env bash
# wasm-toolchain.sh [-q]: makes `cargo test --target wasm32-wasip1` work on this machine, whatever
# it has, and says how: writes target/wasm/env.sh (sh syntax, one `export` a line) and prints it
# (not with -q). Idempotent: a second run only checks its stamps and rewrites env.sh (about 0.1 s).
# scripts/wasm-cargo runs it and then cargo in that environment; `make wasm-test`
# (scripts/wasm-test.sh) calls that.
#
# Three ways to a wasm32-wasip1 std, first possible wins (WASM_TOOLCHAIN=sysroot|build-std|
# debian-root forces one):
#
#   sysroot      The compiler already has the target (a developer machine after
#                `rustup target add wasm32-wasip1`, or a distribution rustc with it). Nothing to do
#                but the test runner.
#
#   build-std    (primary where the target is missing) Debian's `rust-src` package of exactly the
#                installed rustc's version and Debian's `wasi-libc`, from trixie-backports, are
#                downloaded with apt into a private apt state under target/wasm/apt (no root, no
#                change to the system's apt configuration: the suite is added only there) and
#                unpacked under target/wasm. Cargo then builds std for the target from those
#                sources (-Zbuild-std, allowed on stable rustc by RUSTC_BOOTSTRAP=1), once per
#                target dir and profile. Chosen over debian-root because it needs no root, ~70 MB
#                instead of ~1.8 GB, 1-2.5 min cold instead of 4.5, and above all it uses the same
#                rustc, the same Cargo.lock resolution and the same target/ as the native build,
#                so the wasm build checks the code the team actually ships. Impossible when Debian
#                has no rust-src of exactly that version (rustup moved ahead of Debian).
#
#   debian-root  (fallback) A debootstrapped Debian trixie root under target/wasm/debian-root
#                with trixie-backports' rustc, cargo and libstd-rust-dev-wasm32 (a real,
#                prebuilt wasm std, but of Debian's rustc version, not ours). Needs root.
#                scripts/wasm-chroot runs cargo inside it; the project is bind-mounted at
#                its own path. Its own target dir (target/wasm/debian-target), since its rustc
#                differs from the host's.
#
# Nothing is ever written into the rustup toolchain (read-only on some machines): everything
# lives under this project's target/. The Debian mirror is this machine's own (from /etc/apt, or
# WASM_DEBIAN_MIRROR), so no host name is written into the repository.
#
# The test runner is scripts/wasm-run: the wasmtime package from PyPI at the version pinned below,
# in target/tools/venv (the project's place for PyPI tools), or a wasmtime CLI already on PATH.
#
# wasm32-wasip2 (a WASI 0.2 component) is reported as WASM_WASIP2=yes or `no: why`.
#
# Fails with one line on stderr, `wasm-toolchain: <why>`, and exit 1 when no way is possible.
set -euo pipefail

# The runner's engine. Pinned: a new wasmtime can change WASI behaviour under the tests' feet.
WASMTIME_PY_VERSION=50.0.1
# Where Debian publishes a rust-src newer than bookworm's: the release after this machine's and
# its backports (trixie-backports carries every recent stable rustc's sources).
DEBIAN_SUITES=${WASM_DEBIAN_SUITES:-trixie-backports trixie}
DEBIAN_ROOT_SUITE=trixie
# Plus the lld-N that libstd-rust-dev-wasm32 recommends (its linker; recommends are otherwise
# skipped, clang among them); python3 runs the wasmtime package for scripts/wasm-run in there.
DEBIAN_ROOT_PACKAGES="rustc cargo libstd-rust-dev-wasm32 python3 ca-certificates"

quiet=0
[ "${1:-}" = -q ] && quiet=1
here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
root=$(dirname "$here")
state=$root/target/wasm
mkdir -p "$state"
# One at a time: two make jobs starting wasm builds together would share one apt state and unpack
# into the same directories.
exec 9>"$state/.lock"
flock 9

log() { echo "wasm-toolchain: $*" >&2; }
die() { echo "wasm-toolchain: $*" >&2; exit 1; }
is_root() { [ "$(id -u)" = 0 ]; }

# Runs apt-get as root or through sudo; for installing on the host what a step needs (python3-venv,
# debootstrap). Only ever the host's own sources, never a new suite.
host_apt_install() {
  local sudo=""
  if ! is_root; then
    command -v sudo >/dev/null 2>&1 || return 1
    sudo=sudo
  fi
  command -v apt-get >/dev/null 2>&1 || return 1
  # apt-get update once per run: a fresh machine has no lists at all.
  if [ -z "${host_apt_updated:-}" ]; then $sudo apt-get update -qq >/dev/null || return 1; host_apt_updated=1; fi
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends "$@" >/dev/null
}

# This machine's Debian mirror: the first non-security source in /etc/apt (deb822 or one-line).
debian_mirror() {
  if [ -n "${WASM_DEBIAN_MIRROR:-}" ]; then echo "$WASM_DEBIAN_MIRROR"; return; fi
  local f m
  for f in /etc/apt/sources.list.d/*.sources; do
    [ -f "$f" ] || continue
    m=$(awk 'BEGIN { RS = ""; FS = "\n" }
      { uri = ""; suites = ""
        for (i = 1; i <= NF; i++) {
          if ($i ~ /^URIs:/) { split($i, a, /[ \t]+/); uri = a[2] }
          if ($i ~ /^Suites:/) suites = $i }
        if (uri != "" && suites !~ /security/ && uri ~ /debian/) { print uri; exit } }' "$f")
    [ -n "$m" ] && { echo "$m"; return; }
  done
  for f in /etc/apt/sources.list /etc/apt/sources.list.d/*.list; do
    [ -f "$f" ] || continue
    m=$(awk '$1 == "deb" && $0 !~ /security/ {
      for (i = 2; i <= NF; i++) if ($i ~ /^[a-z]+:\/\//) { print $i; exit } }' "$f")
    [ -n "$m" ] && { echo "$m"; return; }
  done
  return 1
}

rustc_q() { (cd "$root" && rustc "$@"); }
host=$(rustc_q -vV 2>/dev/null | awk '/^host:/ {print $2}') || true
release=$(rustc_q -vV 2>/dev/null | awk '/^release:/ {print $2}') || true
[ -n "$host" ] && [ -n "$release" ] || die "no working rustc on PATH"
sysroot=$(rustc_q --print sysroot)
# grep without -q: it would stop reading, and rustc's broken pipe fail the pipeline (pipefail).
has_target() { rustc_q --print target-list | grep -x "$1" >/dev/null; }
sysroot_has_std() { compgen -G "$sysroot/lib/rustlib/$1/lib/libstd-*.rlib" >/dev/null; }

# ---------------------------------------------------------------------------------------------
# build-std: Debian's rust-src and wasi-libc in a private apt state.
aptdir=$state/apt
apt_opts=(
  -o "Dir::State=$aptdir/state" -o "Dir::State::status=$aptdir/state/status"
  -o "Dir::Cache=$aptdir/cache" -o "Dir::Etc::SourceList=$aptdir/sources.list"
  -o "Dir::Etc::SourceParts=$aptdir/sources.list.d" -o "Dir::Etc::Preferences=$aptdir/preferences"
  -o "Dir::Etc::PreferencesParts=$aptdir/preferences.d"
  # Downloads run as whoever we are: apt's _apt sandbox user cannot write into target/.
  -o "APT::Sandbox::User=$(id -un)"
  # Only the Packages indexes: no translations, no AppStream metadata (5 MB we never read).
  -o Acquire::Languages=none -o Acquire::IndexTargets::deb::DEP-11::DefaultEnabled=false
)
private_apt_update() {
  local mirror keyring suite opts=""
  mirror=$(debian_mirror) || { why="no Debian mirror in /etc/apt"; return 1; }
  command -v apt-get >/dev/null && command -v dpkg-deb >/dev/null || { why="no apt-get/dpkg-deb (not Debian)"; return 1; }
  mkdir -p "$aptdir/state/lists/partial" "$aptdir/cache/archives/partial" "$aptdir/sources.list.d" "$aptdir/preferences.d"
  : >"$aptdir/state/status"
  keyring=/usr/share/keyrings/debian-archive-keyring.gpg
  [ -f "$keyring" ] && opts="[signed-by=$keyring] "
  : >"$aptdir/sources.list"
  for suite in $DEBIAN_SUITES; do echo "deb $opts$mirror $suite main" >>"$aptdir/sources.list"; done
  # apt-get update exits 0 when it could not fetch an index ("W: Failed to fetch"): a mirror out
  # of reach must read as a failure, never as "Debian has no such package".
  if ! apt-get "${apt_opts[@]}" -qq update >"$aptdir/update.log" 2>&1 \
    || grep -qE '^(E|W): (Failed to fetch|Some index files failed)' "$aptdir/update.log"; then
    why="apt-get update of $DEBIAN_SUITES failed ($(grep -E '^(E|W):' "$aptdir/update.log" | head -1))"
    return 1
  fi
}
# Newest version of a package in the private lists whose upstream part satisfies a pattern.
private_apt_version() {
  apt-cache "${apt_opts[@]}" madison "$1" 2>/dev/null | awk -F'|' '{gsub(/ /, "", $2); print $2}' \
    | grep -E "$2" | sort -Vr | head -1
}
private_apt_fetch() { # package=version -> path of the .deb
  local dl=$aptdir/debs
  mkdir -p "$dl"
  (cd "$dl" && apt-get "${apt_opts[@]}" -qq download "$1" >/dev/null 2>&1) || return 1
  ls -t "$dl/${1%%=*}_"*.deb | head -1
}

prepare_build_std() {
  local tools=$sysroot/lib/rustlib/$host/bin src_dir libc_dir rust_src_ver libc_ver deb tmp
  has_target wasm32-wasip1 || { why="rustc $release has no wasm32-wasip1 target"; return 1; }
  # The target links with the toolchain's own rust-lld: no system linker needed.
  [ -x "$tools/rust-lld" ] || { why="$tools/rust-lld missing"; return 1; }
  src_dir=$state/rust-src-$release
  libc_dir=$state/wasi-libc
  if [ ! -f "$src_dir/library/Cargo.lock" ] || [ ! -f "$libc_dir/.version" ]; then
    log "fetching Debian's rust-src $release and wasi-libc (private apt state in $aptdir)"
    private_apt_update || return 1
  fi
  if [ ! -f "$src_dir/library/Cargo.lock" ]; then
    # Exactly our rustc's sources: std from another version does not compile with this rustc.
    rust_src_ver=$(private_apt_version rust-src "^${release//./\\.}\+") \
      || true
    [ -n "$rust_src_ver" ] || { why="Debian ($DEBIAN_SUITES) has no rust-src $release for the installed rustc"; why_lasting=1; return 1; }
    deb=$(private_apt_fetch "rust-src=$rust_src_ver") || { why="download of rust-src $rust_src_ver failed"; return 1; }
    # Only library/ (68 MB of the package's 340): the compiler's sources are not needed.
    tmp=$(mktemp -d "$state/.rust-src.XXXXXX")
    dpkg-deb --fsys-tarfile "$deb" | tar -x -C "$tmp" --strip-components=4 --wildcards './usr/src/rustc-*/library/*' \
      || { rm -rf "$tmp"; why="unpacking $deb failed"; return 1; }
    [ -f "$tmp/library/Cargo.lock" ] || { rm -rf "$tmp"; why="$deb has no library/Cargo.lock"; return 1; }
    echo "$rust_src_ver" >"$tmp/.version"
    rm -rf "$src_dir"; mv "$tmp" "$src_dir"
    rm -f "$deb"
  fi
  if [ ! -f "$libc_dir/.version" ]; then
    libc_ver=$(private_apt_version wasi-libc .) || true
    [ -n "$libc_ver" ] || { why="Debian ($DEBIAN_SUITES) has no wasi-libc"; return 1; }
    deb=$(private_apt_fetch "wasi-libc=$libc_ver") || { why="download of wasi-libc $libc_ver failed"; return 1; }
    tmp=$(mktemp -d "$state/.wasi-libc.XXXXXX")
    dpkg-deb -x "$deb" "$tmp" || { rm -rf "$tmp"; why="unpacking $deb failed"; return 1; }
    echo "$libc_ver" >"$tmp/.version"
    rm -rf "$libc_dir"; mv "$tmp" "$libc_dir"
    rm -f "$deb"
  fi
  local p1=$libc_dir/usr/lib/wasm32-wasip1
  [ -f "$p1/libc.a" ] || p1=$libc_dir/usr/lib/wasm32-wasi
  [ -f "$p1/crt1-command.o" ] || { why="wasi-libc $(cat "$libc_dir/.version") has no crt1-command.o"; return 1; }

  # What rustc would take from the target's self-contained sysroot dir, which a source-built std
  # does not have: -L native= makes rustc find crt1-command.o there (it searches native -L dirs
  # for its startup objects) and the linker find libc.a. Target-specific, so build scripts and
  # proc macros (host) are untouched. Caveat: a RUSTFLAGS in the environment replaces these.
  env_lines+=(
    "WASM_TOOLCHAIN=build-std"
    "WASM_CARGO=cargo"
    # Cargo refuses -Z options on a stable toolchain without it; it also lets std's
    # #![feature]s compile, which they do on Rust's own CI the same way.
    "RUSTC_BOOTSTRAP=1"
    # = -Zbuild-std=std,panic_abort; `test` and `proc_macro` are added by cargo for tests.
    "CARGO_UNSTABLE_BUILD_STD=std,panic_abort"
    # Where cargo looks for library/ instead of the (read-only, rust-src-less) sysroot.
    "__CARGO_TESTS_ONLY_SRC_ROOT=$src_dir/library"
    "CARGO_TARGET_WASM32_WASIP1_RUSTFLAGS=-L native=$p1"
    "CARGO_TARGET_WASM32_WASIP1_RUSTDOCFLAGS=-L native=$p1"
  )
  # wasip2: same std sources, wasi-libc's wasip2 build, and the toolchain's wasm-component-ld
  # turning the core module into a component.
  local p2=$libc_dir/usr/lib/wasm32-wasip2
  if ! has_target wasm32-wasip2; then wasip2="no: rustc $release has no wasm32-wasip2 target"
  elif [ ! -x "$tools/wasm-component-ld" ]; then wasip2="no: $tools/wasm-component-ld missing"
  elif [ ! -f "$p2/libc.a" ]; then wasip2="no: wasi-libc $(cat "$libc_dir/.version") has no wasm32-wasip2 build"
  else
    wasip2=yes
    env_lines+=("CARGO_TARGET_WASM32_WASIP2_RUSTFLAGS=-L native=$p2" "CARGO_TARGET_WASM32_WASIP2_RUSTDOCFLAGS=-L native=$p2")
  fi
  detail="rustc $release, std from Debian rust-src $(cat "$src_dir/.version"), wasi-libc $(cat "$libc_dir/.version")"
}

# ---------------------------------------------------------------------------------------------
# debian-root: a trixie root with Debian's rustc and its prebuilt wasm std.
droot=$state/debian-root
prepare_debian_root() {
  local mirror
  is_root || { why="a Debian root needs root (debootstrap, chroot)"; return 1; }
  command -v unshare >/dev/null || { why="no unshare (util-linux)"; return 1; }
  mirror=$(debian_mirror) || { why="no Debian mirror in /etc/apt"; return 1; }
  if [ "$(cat "$droot/.ready" 2>/dev/null)" != "$DEBIAN_ROOT_PACKAGES" ]; then
    command -v debootstrap >/dev/null || host_apt_install debootstrap || { why="cannot install debootstrap"; return 1; }
    log "building a Debian $DEBIAN_ROOT_SUITE root with trixie-backports' rustc in $droot (~1.8 GB, several minutes)"
    rm -rf "$droot"; mkdir -p "$droot"
    # In a mount namespace of its own, so that the /proc and /sys debootstrap mounts inside the
    # root vanish with it even when it is killed: nothing is left mounted under target/.
    # (--propagation unchanged, then rprivate where possible: inside a chroot / is no mount
    # point and unshare's own --propagation private fails.)
    unshare --mount --propagation unchanged sh -c 'mount --make-rprivate / 2>/dev/null || true; exec "$@"' sh \
      debootstrap --variant=minbase "$DEBIAN_ROOT_SUITE" "$droot" "$mirror" >"$state/debootstrap.log" 2>&1 \
      || { why="debootstrap $DEBIAN_ROOT_SUITE failed ($(tail -1 "$state/debootstrap.log"))"; return 1; }
    printf 'Types: deb\nURIs: %s\nSuites: %s %s-updates %s-backports\nComponents: main\nSigned-By: /usr/share/keyrings/debian-archive-keyring.gpg\n' \
      "$mirror" "$DEBIAN_ROOT_SUITE" "$DEBIAN_ROOT_SUITE" "$DEBIAN_ROOT_SUITE" >"$droot/etc/apt/sources.list.d/debian.sources"
    rm -f "$droot/etc/apt/sources.list"
    # The host's ways out (proxies, its view of Release dates), not its list of sources.
    apt-config dump | grep -E '^Acquire::(https?|ftp)::Proxy|^Acquire::Check-(Valid-Until|Date)' \
      >"$droot/etc/apt/apt.conf.d/50host-acquire" || true
    (cd "$root" && "$here/wasm-chroot" sh -c "set -e; apt-get update -qq
      # The newest version's lld (backports'), as its Recommends names it.
      lld=\$(apt-cache show libstd-rust-dev-wasm32 | grep '^Recommends:' | grep -o 'lld-[0-9]*' | sort -V | tail -1)
      DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends \
        -t $DEBIAN_ROOT_SUITE-backports $DEBIAN_ROOT_PACKAGES \$lld") \
      >"$state/debian-root.log" 2>&1 \
      || { why="apt-get install in the Debian root failed ($(grep -E '^E:' "$state/debian-root.log" | head -1))"; return 1; }
    echo "$DEBIAN_ROOT_PACKAGES" >"$droot/.ready"
  fi
  # Debian's rustc links wasm with `rust-lld`, which only its rust-llvm package provides (with
  # all of clang and llvm, ~600 MB more). lld itself, called as rust-lld with rustc's
  # `-flavor wasm`, is the same linker.
  if [ ! -L "$droot/usr/local/bin/rust-lld" ]; then
    local lld
    lld=$(cd "$droot/usr/bin" && ls lld-[0-9]* 2>/dev/null | sort -V | tail -1)
    [ -n "$lld" ] || { why="no lld-N in the Debian root"; return 1; }
    mkdir -p "$droot/usr/local/bin"
    ln -s "/usr/bin/$lld" "$droot/usr/local/bin/rust-lld"
  fi
  local rsys drelease
  rsys=$(chroot "$droot" rustc --print sysroot) && drelease=$(chroot "$droot" rustc -vV | awk '/^release:/ {print $2}') \
    || { why="the Debian root's rustc does not run"; return 1; }
  compgen -G "$droot$rsys/lib/rustlib/wasm32-wasip1/lib/libstd-*.rlib" >/dev/null \
    || { why="the Debian root's rustc has no wasm32-wasip1 std"; return 1; }
  env_lines+=(
    "WASM_TOOLCHAIN=debian-root"
    "WASM_CARGO=$here/wasm-chroot cargo"
  )
  # Debian ships the wasip2 std but not wasm-component-ld, the linker that makes the component.
  if ! compgen -G "$droot$rsys/lib/rustlib/wasm32-wasip2/lib/libstd-*.rlib" >/dev/null; then
    wasip2="no: the Debian root has no wasm32-wasip2 std"
  elif chroot "$droot" sh -c 'command -v wasm-component-ld' >/dev/null 2>&1; then wasip2=yes
  else wasip2="no: Debian packages no wasm-component-ld (the wasip2 linker)"
  fi
  detail="Debian rustc $drelease in $droot (host rustc $release is not used for wasm)"
}

# ---------------------------------------------------------------------------------------------
# The runner: a wasmtime CLI on PATH, else the pinned PyPI package in the project's venv.
venv=$root/target/tools/venv
prepare_runner() {
  if [ "${WASM_RUN_ENGINE:-}" != python ] && command -v wasmtime >/dev/null 2>&1; then
    runner_detail="wasmtime CLI $(wasmtime --version 2>/dev/null | awk '{print $2}')"
    env_lines+=("WASM_RUN_ENGINE=cli")
    return 0
  fi
  if ! compgen -G "$venv/lib/python3*/site-packages/wasmtime-$WASMTIME_PY_VERSION.dist-info" >/dev/null; then
    log "installing wasmtime==$WASMTIME_PY_VERSION from PyPI into $venv"
    if ! command -v python3 >/dev/null 2>&1 || ! python3 -c 'import ensurepip, venv' >/dev/null 2>&1; then
      # A minimal Debian has no Python; Debian ships venv's ensurepip apart from python3.
      host_apt_install python3 python3-venv || die "the runner needs python3 with venv (apt-get install python3-venv), and this user cannot install it"
    fi
    [ -x "$venv/bin/pip" ] || python3 -m venv "$venv" || die "python3 -m venv $venv failed"
    "$venv/bin/pip" install --quiet --disable-pip-version-check "wasmtime==$WASMTIME_PY_VERSION" \
      || die "pip install wasmtime==$WASMTIME_PY_VERSION failed"
  fi
  runner_detail="wasmtime $WASMTIME_PY_VERSION (PyPI) in $venv"
  env_lines+=("WASM_RUN_ENGINE=python")
}

# ---------------------------------------------------------------------------------------------
env_lines=()
wasip2=""
detail=""
why=""
why_lasting=""
mode=${WASM_TOOLCHAIN:-auto}
case $mode in
  auto | sysroot)
    if sysroot_has_std wasm32-wasip1; then
      mode=sysroot
      env_lines+=("WASM_TOOLCHAIN=sysroot" "WASM_CARGO=cargo")
      if sysroot_has_std wasm32-wasip2; then wasip2=yes
      else wasip2="no: \`rustup target add wasm32-wasip2\` not done"; fi
      detail="rustc $release with its own wasm32-wasip1 std ($sysroot)"
    elif [ "$mode" = sysroot ]; then
      die "rustc $release has no wasm32-wasip1 std (rustup target add wasm32-wasip1)"
    fi
    ;;
  build-std | debian-root) ;;
  *) die "WASM_TOOLCHAIN=$mode: want sysroot, build-std or debian-root" ;;
esac
# Once build-std was impossible for this rustc and these suites, auto goes straight to the
# fallback instead of asking the mirror again on every run; delete the file to ask again.
impossible=$state/build-std-impossible
if [ "$mode" = auto ] && [ "$(head -1 "$impossible" 2>/dev/null)" = "$release $DEBIAN_SUITES" ]; then
  why_a=$(tail -1 "$impossible")
  prepare_debian_root || die "no wasm32-wasip1 toolchain possible: build-std: $why_a; debian-root: $why"
  mode=debian-root
fi
if [ "$mode" = auto ] || [ "$mode" = build-std ]; then
  if prepare_build_std; then mode=build-std; rm -f "$impossible"
  elif [ "$mode" = build-std ]; then die "build-std impossible: $why"
  else
    why_a=$why
    # Only an answer from the mirror is remembered, never a failed download.
    [ -n "$why_lasting" ] && printf '%s\n%s\n' "$release $DEBIAN_SUITES" "$why_a" >"$impossible"
    log "build-std impossible ($why_a); falling back to a Debian root"
    prepare_debian_root || die "no wasm32-wasip1 toolchain possible: build-std: $why_a; debian-root: $why"
    mode=debian-root
  fi
elif [ "$mode" = debian-root ]; then
  prepare_debian_root || die "debian-root impossible: $why"
fi
prepare_runner

env_lines+=("CARGO_TARGET_WASM32_WASIP1_RUNNER=$here/wasm-run")
[ "$wasip2" = yes ] && env_lines+=("CARGO_TARGET_WASM32_WASIP2_RUNNER=$here/wasm-run")
env_lines+=("WASM_WASIP2=$wasip2")

{
  echo "# Written by scripts/wasm-toolchain.sh: $detail; runner: $runner_detail."
  echo "# For wasm recipes only (. target/wasm/env.sh): CARGO_UNSTABLE_BUILD_STD breaks host builds."
  for line in "${env_lines[@]}"; do
    # Single quotes, so that sh (make's shell) reads the value back as it was.
    value=${line#*=}
    printf "export %s='%s'\n" "${line%%=*}" "${value//\'/\'\\\'\'}"
  done
} >"$state/env.sh.tmp"
mv "$state/env.sh.tmp" "$state/env.sh"
[ "$quiet" = 1 ] || cat "$state/env.sh"
