#!/usr/bin/env bash
# Supply-chain checks, offline:
#   cargo audit  against the vendored subset of the RustSec advisory database
#                (deploy/supply-chain/advisory-db: the advisories of every crate in Cargo.lock);
#                ignored advisories are in .cargo/audit.toml, justified in docs/advisories.md;
#   cargo deny   licences, bans (no OpenSSL, no aws-lc) and sources (deny.toml).
#
# Usage: scripts/audit.sh                 run both (a tool that is not installed is skipped with a
#                                          message; EGW_AUDIT_REQUIRED=1 makes that an error)
#        scripts/audit.sh --refresh DIR   rewrite the vendored subset from DIR, a copy (git clone) of
#                                          the advisory database, for the crates of Cargo.lock
#
# Install the tools with `cargo install --locked cargo-audit cargo-deny`.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

DB=deploy/supply-chain/advisory-db

lock_crates() { grep '^name = ' Cargo.lock | sed 's/^name = "\(.*\)"$/\1/' | sort -u; }

if [ "${1:-}" = "--refresh" ]; then
  src="${2:?usage: scripts/audit.sh --refresh DIR (a copy of the advisory database)}"
  [ -d "$src/crates" ] || { echo "error: $src has no crates/ directory" >&2; exit 2; }
  rm -rf "$DB"
  mkdir -p "$DB/crates"
  n=0
  for c in $(lock_crates); do
    [ -d "$src/crates/$c" ] || continue
    mkdir -p "$DB/crates/$c"
    for f in "$src/crates/$c"/*.md; do
      # The machine-readable front matter and the title; the prose stays upstream (`url`).
      python3 - "$f" "$DB/crates/$c/$(basename "$f")" <<'PY'
import re, sys
s = open(sys.argv[1], encoding="utf-8").read()
m = re.match(r"(```toml\n.*?\n```\n)\s*(# [^\n]*)\n", s, re.S)
if not m:
    sys.exit(f"{sys.argv[1]}: no front matter and title")
open(sys.argv[2], "w", encoding="utf-8").write(
    m.group(1) + "\n" + m.group(2) + "\n\nSee the advisory's `url` and `references`.\n")
PY
      n=$((n + 1))
    done
  done
  lock_crates > "$DB/CRATES"
  {
    echo "commit $(git -C "$src" rev-parse HEAD 2>/dev/null || echo unknown)"
    echo "date $(git -C "$src" log -1 --format=%cs 2>/dev/null || echo unknown)"
    echo "advisories $n"
  } > "$DB/SOURCE"
  echo "vendored $n advisories for $(wc -l < "$DB/CRATES") crates into $DB"
  exit 0
fi

missing_tool() {
  if [ "${EGW_AUDIT_REQUIRED:-0}" = 1 ]; then
    echo "error: $1 is not installed (cargo install --locked $1)" >&2
    exit 1
  fi
  echo "skipped: $1 is not installed (cargo install --locked $1; EGW_AUDIT_REQUIRED=1 makes this an error)"
}

status=0
if cargo audit --version >/dev/null 2>&1; then
  # Crates added since the subset was vendored have no advisories in it: say so.
  new="$(comm -23 <(lock_crates) "$DB/CRATES" | tr '\n' ' ')"
  if [ -n "$new" ]; then
    echo "error: crates not covered by the vendored advisories (refresh: scripts/audit.sh --refresh DIR): $new" >&2
    status=1
  fi
  echo "advisory database: $(tr '\n' ' ' < "$DB/SOURCE")"
  cargo audit --db "$DB" --no-fetch --stale --deny warnings || status=1
else
  missing_tool cargo-audit
fi
if cargo deny --version >/dev/null 2>&1; then
  cargo deny --offline check --hide-inclusion-graph licenses bans sources || status=1
else
  missing_tool cargo-deny
fi
exit "$status"
