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

port_open() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }

as_root() { if [ "$(id -u)" -eq 0 ]; then "$@"; else sudo "$@"; fi; }

# The benchmark cases' harness (benches/cases/run.sh) runs once per case on a tiny input in
# the tests; it needs jq, GNU time and unzip (a case installs a packaged plugin). The file
# sink's tests read compressed files back with gzip and zstd.
if ! command -v jq >/dev/null 2>&1 || [ ! -x /usr/bin/time ] || ! command -v unzip >/dev/null 2>&1 \
  || ! command -v gzip >/dev/null 2>&1 || ! command -v zstd >/dev/null 2>&1; then
  echo "installing jq, time and unzip" >&2
  as_root apt-get update -qq
  as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq jq time unzip gzip zstd
fi

# The web console's browser test (server/tests/console.rs) drives Debian's headless chromium
# through chromedriver.
if [ ! -x /usr/bin/chromedriver ] || [ ! -x /usr/bin/chromium ]; then
  echo "installing chromium and chromedriver" >&2
  as_root apt-get update -qq
  as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium chromium-driver
fi

# MQTT tests talk to a real Mosquitto on 127.0.0.1:1883 (and start private ones on free ports
# for outage tests, so the binary must exist).
if ! command -v mosquitto >/dev/null 2>&1 && [ ! -x /usr/sbin/mosquitto ]; then
  echo "installing mosquitto" >&2
  as_root apt-get update -qq
  as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq mosquitto
fi
if ! port_open 1883; then
  echo "starting mosquitto on 127.0.0.1:1883" >&2
  mosquitto_bin=$(command -v mosquitto || echo /usr/sbin/mosquitto)
  "$mosquitto_bin" -d -c "$PWD/scripts/mosquitto.conf"
  for _ in $(seq 50); do port_open 1883 && break; sleep 0.1; done
  port_open 1883 || { echo "mosquitto did not start" >&2; exit 1; }
fi

# The MySQL sink plugin's tests write into a real MariaDB on 127.0.0.1:3306 as root without a
# password, in database `test`. Start one if none answers; never restart a running one.
if ! command -v mariadb >/dev/null 2>&1; then
  echo "installing mariadb" >&2
  as_root apt-get update -qq
  as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq mariadb-server mariadb-client
fi
if ! port_open 3306; then
  echo "starting mariadb on 127.0.0.1:3306" >&2
  as_root service mariadb start >/dev/null 2>&1 || {
    as_root mkdir -p /run/mysqld && as_root chown mysql /run/mysqld
    as_root /usr/sbin/mariadbd --user=mysql --bind-address=127.0.0.1 --port=3306 >/dev/null 2>&1 &
  }
  for _ in $(seq 100); do port_open 3306 && break; sleep 0.2; done
  port_open 3306 || { echo "mariadb did not start" >&2; exit 1; }
fi
if ! mariadb -h 127.0.0.1 -u root -e 'SELECT 1' >/dev/null 2>&1; then
  # A fresh Debian MariaDB lets root in only through the unix socket.
  as_root mariadb -u root -e "ALTER USER 'root'@'localhost' IDENTIFIED VIA mysql_native_password USING PASSWORD('') OR unix_socket; FLUSH PRIVILEGES;"
fi
mariadb -h 127.0.0.1 -u root -e 'CREATE DATABASE IF NOT EXISTS test'

# Redis lookup tables are tested against a real Redis on 127.0.0.1:6379 (database 1, keys
# under a per-test prefix). Start one if none answers; never restart a running one.
if ! command -v redis-server >/dev/null 2>&1; then
  echo "installing redis" >&2
  as_root apt-get update -qq
  as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq redis-server
fi
if ! port_open 6379; then
  echo "starting redis on 127.0.0.1:6379" >&2
  redis-server --bind 127.0.0.1 --port 6379 --daemonize yes --save '' --appendonly no >/dev/null
  for _ in $(seq 50); do port_open 6379 && break; sleep 0.1; done
  port_open 6379 || { echo "redis did not start" >&2; exit 1; }
fi

# The sql connector's tests use a real PostgreSQL on 127.0.0.1:5432 (trust auth, user postgres,
# database `test`). Start the cluster if none answers; never restart a running one.
if ! command -v psql >/dev/null 2>&1 || ! ls /etc/postgresql/*/main >/dev/null 2>&1; then
  echo "installing postgresql" >&2
  as_root apt-get update -qq
  as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq postgresql postgresql-client
fi
if ! port_open 5432; then
  echo "starting postgresql on 127.0.0.1:5432" >&2
  pg_version=$(ls /etc/postgresql | sort -V | tail -1)
  as_root pg_ctlcluster --skip-systemctl-redirect "$pg_version" main start
  for _ in $(seq 100); do port_open 5432 && break; sleep 0.2; done
  port_open 5432 || { echo "postgresql did not start" >&2; exit 1; }
fi
if ! psql -h 127.0.0.1 -U postgres -d postgres -tAc 'SELECT 1' >/dev/null 2>&1; then
  # A fresh Debian cluster asks for passwords over TCP: let local connections in (tests only).
  pg_hba=$(ls /etc/postgresql/*/main/pg_hba.conf | sort -V | tail -1)
  as_root sed -i -E 's/^(host\s+all\s+all\s+127\.0\.0\.1\/32\s+)\S+/\1trust/' "$pg_hba"
  as_root pg_ctlcluster --skip-systemctl-redirect "$(ls /etc/postgresql | sort -V | tail -1)" main reload
fi
if ! psql -h 127.0.0.1 -U postgres -d postgres -tAc "SELECT 1 FROM pg_database WHERE datname = 'test'" | grep -q 1; then
  psql -h 127.0.0.1 -U postgres -d postgres -c 'CREATE DATABASE test' >/dev/null
fi

# The kafka connector's tests start private Kafka-protocol brokers: tansu, a Kafka-compatible
# broker in one Rust binary, with in-memory storage (its "dynostore" feature) and SQLite storage
# ("libsql": the only one that keeps SCRAM credentials, for the SASL SCRAM test). Installed once
# per machine into a fixed prefix (the tests look there, or at $QUIVER_TANSU); the build's
# target dir is removed afterwards to save disk.
tansu_root="$HOME/.local/share/quiver/tansu-0.6.0-lite"
if [ -z "${QUIVER_TANSU:-}" ] && [ ! -x "$tansu_root/bin/tansu" ]; then
  echo "installing tansu 0.6.0 (Kafka-compatible broker for the kafka tests)" >&2
  tansu_target=$(mktemp -d)
  CARGO_TARGET_DIR="$tansu_target" cargo install --locked --quiet tansu@0.6.0 \
    --features dynostore,libsql --root "$tansu_root"
  rm -rf "$tansu_target"
fi
export QUIVER_TANSU="${QUIVER_TANSU:-$tansu_root/bin/tansu}"

cargo fmt --all -- --check
# The MySQL sink plugin is its own Cargo project (built like a user's plugin).
cargo fmt --manifest-path connectors/mysql/Cargo.toml -- --check
CARGO_TARGET_DIR=target/plugins cargo clippy --manifest-path connectors/mysql/Cargo.toml --all-targets --locked -- -D warnings
CARGO_TARGET_DIR=target/plugins cargo test --manifest-path connectors/mysql/Cargo.toml --release --locked
cargo clippy --workspace --all-targets --locked -- -D warnings
# nextest does not run doctests: the README's engine example and the plugin guide's examples.
cargo test --doc --workspace --locked
cargo nextest run --workspace --locked --no-fail-fast

# The REST API against its OpenAPI description (GET /openapi.json): schemathesis sends
# generated requests to a live quiverd on free loopback ports with an empty data dir; any 5xx
# or a server that stops answering fails. Plugin installs and data imports are left out (they
# would fetch generated URLs). Bounded: 50 examples per operation, at most 3 minutes.
# pip puts scripts in the user base's bin when it installs (or found) the package per user.
PATH="$PATH:$(python3 -m site --user-base)/bin"
if ! command -v schemathesis >/dev/null 2>&1; then
  echo "installing schemathesis" >&2
  python3 -m pip install --quiet schemathesis
  hash -r
fi
command -v schemathesis >/dev/null 2>&1 || { echo "schemathesis is not on PATH after installing it" >&2; exit 1; }
cargo build --locked -p quiver-server --bin quiverd
free_port() { python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'; }
api_port=$(free_port)
push_port=$(free_port)
api_data=$(mktemp -d)
target/debug/quiverd --bind "127.0.0.1:$api_port" --push-bind "127.0.0.1:$push_port" \
  --data-dir "$api_data" --workers 1 >"$api_data/quiverd.log" 2>&1 &
api_pid=$!
trap 'kill "$api_pid" 2>/dev/null || true; rm -rf "$api_data"' EXIT
for _ in $(seq 100); do port_open "$api_port" && break; sleep 0.1; done
# Run from the data dir: schemathesis keeps its state in ./.schemathesis.
(cd "$api_data" && timeout 180 schemathesis run "http://127.0.0.1:$api_port/openapi.json" \
  --checks not_a_server_error --exclude-operation-id installPlugin \
  --exclude-operation-id updatePlugin --exclude-operation-id importData --max-examples 50 --seed 1 --request-timeout 10 --no-color)
port_open "$api_port" || { echo "quiverd stopped answering; its log:" >&2; cat "$api_data/quiverd.log" >&2; exit 1; }
