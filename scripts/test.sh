#!/usr/bin/env bash
# The one test command: installs what the tests need if it is missing, then runs formatting,
# lint and the whole test suite. Used by CI (.ci/run) and by developers alike.
set -euo pipefail
cd "$(dirname "$0")/.."

if ! command -v cargo >/dev/null 2>&1; then
  echo "cargo is required (install Rust with rustup)" >&2
  exit 1
fi
if ! cargo nextest --version >/dev/null 2>&1; then
  echo "installing cargo-nextest" >&2
  cargo install --locked cargo-nextest
fi

# The engine-core tests use only in-process connectors (memory source and sink), so no
# external service is needed yet. Later suites (MQTT, MariaDB) add their checks here.

cargo fmt --all -- --check
cargo clippy --workspace --all-targets --locked -- -D warnings
cargo nextest run --workspace --locked --no-fail-fast
