#!/usr/bin/env bash
# Builds and checks the release artifacts.
#
# Usage: deploy/package.sh [deb] [aarch64] [glibc231]
#   deb       x86_64 release binary and .deb (cargo deb): contents listed with dpkg-deb -c and
#             checked (binary, unit, config, maintainer scripts, docs, dashboards)
#   aarch64   aarch64 release binary and arm64 .deb with Debian's cross gcc; runs it under
#             qemu-aarch64 when qemu-user is installed
#   glibc231  x86_64 and aarch64 binaries that need at most glibc 2.31 (Debian 11, Ubuntu 20.04),
#             with cargo-zigbuild from PyPI (in a venv under target/)
# Without arguments: deb.
#
# Missing tools are installed: cargo-deb (cargo install --locked), the rustup target,
# gcc-aarch64-linux-gnu (apt). Sizes and the highest glibc symbol needed are printed.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

step() { printf '\n==> %s\n' "$*"; }
fail() { echo "error: $*" >&2; exit 1; }

apt_install() {
  local sudo_cmd=""
  if [ "$(id -u)" -ne 0 ]; then sudo_cmd="sudo"; fi
  $sudo_cmd apt-get update -qq
  $sudo_cmd env DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends "$@"
}

glibc_needed() {
  objdump -T "$1" 2>/dev/null | grep -o 'GLIBC_[0-9.]*' | sort -uV | tail -n 1
}

sizes() {
  local bin="$1" strip="${2:-strip}"
  local stripped
  stripped="$(mktemp)"
  "$strip" -o "$stripped" "$bin"
  printf '%s: %s bytes, stripped %s bytes, needs %s\n' "$bin" \
    "$(stat -c %s "$bin")" "$(stat -c %s "$stripped")" "$(glibc_needed "$bin" || echo '?')"
  rm -f "$stripped"
}

ensure_cargo_deb() {
  if ! cargo deb --version >/dev/null 2>&1; then
    step "Installing cargo-deb (cargo install cargo-deb --locked)"
    cargo install cargo-deb --locked
  fi
  echo "$(cargo deb --version)"
}

# Checks a .deb: lists it and asserts what must be in it.
check_deb() {
  local deb="$1" arch="$2"
  step "Contents of $deb"
  dpkg-deb -I "$deb"
  dpkg-deb -c "$deb"
  local list
  list="$(dpkg-deb -c "$deb" | awk '{print $NF}')"
  for path in ./usr/bin/energy-gateway ./etc/energy-gateway/config.toml \
      ./usr/share/doc/energy-gateway/examples/config.toml \
      ./usr/share/doc/energy-gateway/openapi.yaml \
      ./usr/share/energy-gateway/grafana/readings.json \
      ./usr/share/energy-gateway/grafana/accounts.json \
      ./usr/share/energy-gateway/grafana/alerts.json; do
    grep -qx "$path" <<<"$list" || fail "$deb lacks $path"
  done
  grep -Eq '^\./(usr/)?lib/systemd/system/energy-gateway\.service$' <<<"$list" \
    || fail "$deb lacks the systemd unit"
  [ "$(dpkg-deb -f "$deb" Architecture)" = "$arch" ] || fail "$deb is not $arch"
  local tmp
  tmp="$(mktemp -d)"
  dpkg-deb -e "$deb" "$tmp/DEBIAN"
  dpkg-deb -x "$deb" "$tmp/root"
  for s in postinst prerm postrm; do
    [ -x "$tmp/DEBIAN/$s" ] || fail "$deb lacks an executable $s"
    sh -n "$tmp/DEBIAN/$s" || fail "$s is not valid sh"
  done
  grep -q 'useradd --system' "$tmp/DEBIAN/postinst" || fail "postinst does not create the user"
  grep -q 'systemctl' "$tmp/DEBIAN/postinst" || fail "postinst does not enable the unit"
  grep -qx '/etc/energy-gateway/config.toml' "$tmp/DEBIAN/conffiles" || fail "config.toml is not a conffile"
  local unit
  unit="$(find "$tmp/root" -name energy-gateway.service | head -n 1)"
  grep -qx 'Type=notify' "$unit" || fail "the unit is not Type=notify"
  grep -q '^WatchdogSec=' "$unit" || fail "the unit has no watchdog"
  grep -q '^ExecReload=' "$unit" || fail "the unit has no ExecReload"
  if [ "$arch" = "amd64" ]; then
    "$tmp/root/usr/bin/energy-gateway" check --config "$tmp/root/etc/energy-gateway/config.toml"
  fi
  rm -rf "$tmp"
  echo "OK: $deb"
}

build_deb() {
  ensure_cargo_deb
  step "Release build (x86_64)"
  cargo build --release --locked
  sizes target/release/energy-gateway
  step "cargo deb"
  rm -f target/debian/energy-gateway_*_amd64.deb
  cargo deb --no-build
  check_deb "$(ls target/debian/energy-gateway_*_amd64.deb)" amd64
}

build_aarch64() {
  local target=aarch64-unknown-linux-gnu
  if ! rustup target list --installed | grep -qx "$target"; then
    step "rustup target add $target"
    rustup target add "$target" || fail "rustup could not add $target (see the message above)"
  fi
  if ! command -v aarch64-linux-gnu-gcc >/dev/null 2>&1; then
    step "Installing the cross compiler (apt)"
    apt_install gcc-aarch64-linux-gnu libc6-dev-arm64-cross
  fi
  export CARGO_TARGET_AARCH64_UNKNOWN_LINUX_GNU_LINKER=aarch64-linux-gnu-gcc
  export CC_aarch64_unknown_linux_gnu=aarch64-linux-gnu-gcc
  export AR_aarch64_unknown_linux_gnu=aarch64-linux-gnu-ar
  step "Release build ($target)"
  cargo build --release --locked --target "$target"
  local bin="target/$target/release/energy-gateway"
  readelf -h "$bin" | grep -q 'Machine:.*AArch64' || fail "$bin is not an aarch64 binary"
  sizes "$bin" aarch64-linux-gnu-strip
  if command -v qemu-aarch64 >/dev/null 2>&1; then
    step "Running it under qemu-aarch64"
    qemu-aarch64 -L /usr/aarch64-linux-gnu "$bin" --version
    qemu-aarch64 -L /usr/aarch64-linux-gnu "$bin" check --config deploy/debian/config.toml
  else
    echo "qemu-aarch64 not installed (apt-get install qemu-user): not run"
  fi
  ensure_cargo_deb
  step "cargo deb --target $target"
  rm -f target/debian/energy-gateway_*_arm64.deb target/$target/debian/energy-gateway_*_arm64.deb
  cargo deb --no-build --target "$target"
  check_deb "$(ls target/$target/debian/energy-gateway_*_arm64.deb 2>/dev/null || ls target/debian/energy-gateway_*_arm64.deb)" arm64
}

build_glibc231() {
  local venv=target/zigbuild-venv
  if [ ! -x "$venv/bin/cargo-zigbuild" ]; then
    step "Installing cargo-zigbuild and ziglang from PyPI into $venv"
    python3 -m venv "$venv"
    "$venv/bin/pip" install --quiet cargo-zigbuild ziglang
  fi
  export PATH="$PWD/$venv/bin:$PATH"
  for target in x86_64-unknown-linux-gnu aarch64-unknown-linux-gnu; do
    rustup target list --installed | grep -qx "$target" || rustup target add "$target"
    step "cargo zigbuild --release --target $target.2.31"
    cargo zigbuild --release --locked --target "$target.2.31"
    local bin="target/$target/release/energy-gateway"
    local need
    need="$(glibc_needed "$bin")"
    echo "$bin needs $need"
    printf '%s\n%s\n' "$need" "GLIBC_2.31" | sort -V | tail -n 1 | grep -qx 'GLIBC_2.31' \
      || fail "$bin needs $need, more than glibc 2.31"
  done
}

what=("$@")
[ ${#what[@]} -eq 0 ] && what=(deb)
for w in "${what[@]}"; do
  case "$w" in
    deb) build_deb ;;
    aarch64) build_aarch64 ;;
    glibc231) build_glibc231 ;;
    -h|--help) sed -n '2,16p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
    *) fail "unknown argument $w (try --help)" ;;
  esac
done
