#!/usr/bin/env bash
# The web console's live-update cost with many rules (docs/console.md, "Measurements").
#
# Starts quiverd on free ports with a fresh data dir, imports RULES running rules (default
# 10,000; each `SELECT * FROM demo` into a nop sink) and then measures:
#   1. the server's CPU over WINDOW seconds (default 20) with no console open: the baseline;
#   2. the same with one console event stream open (a page of 500 rules a second, the most a
#      message carries): at one message a second, the CPU above the baseline is the time one
#      snapshot takes (1 % of a core = 10 ms);
#   3. the same with 8 streams open.
# Usage: scripts/console-snapshot-bench.sh [path/to/quiverd]   (default target/release/quiverd,
# else target/debug/quiverd). Needs curl and jq.
set -euo pipefail
cd "$(dirname "$0")/.."
bin=${1:-target/release/quiverd}
[ -x "$bin" ] || bin=target/debug/quiverd
rules=${RULES:-10000}
window=${WINDOW:-20}
free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
rest=$(free_port); push=$(free_port)
data=$(mktemp -d)
"$bin" --bind "127.0.0.1:$rest" --push-bind "127.0.0.1:$push" --data-dir "$data" --workers 2 >/dev/null 2>&1 &
pid=$!
trap 'kill $pid 2>/dev/null; wait $pid 2>/dev/null; rm -rf "$data"' EXIT
for _ in $(seq 100); do curl -sf "127.0.0.1:$rest/ping" >/dev/null && break; sleep 0.1; done
api="127.0.0.1:$rest"
curl -sf -X POST "$api/streams" -d '{"sql": "CREATE STREAM demo (v BIGINT) WITH (DATASOURCE=\"/demo\", TYPE=\"httppush\", FORMAT=\"json\")"}' >/dev/null
# Imports of 2,000 rules each stay under the 1 MiB body limit.
start=$(date +%s.%N)
for ((first = 0; first < rules; first += 2000)); do
  last=$((first + 2000 < rules ? first + 2000 : rules))
  jq -n --argjson a "$first" --argjson b "$last" '
    {content: ({rules: ([range($a; $b)] | map({key: "r\(.)", value: ({id: "r\(.)", sql: "SELECT * FROM demo", actions: [{nop: {}}]} | tostring)}) | from_entries)} | tostring)}' \
    | curl -sf -X POST "$api/ruleset/import" -d @- >/dev/null
done
echo "created $rules rules in $(echo "$(date +%s.%N) - $start" | bc) s ($bin)"
cpu() { awk '{print $14 + $15}' "/proc/$pid/stat"; }
ticks=$(getconf CLK_TCK)
measure() {
  local before after
  before=$(cpu); sleep "$window"; after=$(cpu)
  echo "scale=1; 100 * ($after - $before) / $ticks / $window" | bc
}
sleep 5
echo "CPU with no console open: $(measure) % of one core"
curl -sfN "$api/console/events?limit=500" > /tmp/console-bench-events.$$ &
one=$!
echo "CPU with one event stream (500 rules a message): $(measure) % of one core"
kill $one; wait $one 2>/dev/null || true
messages=$(grep -c '^event: metrics' /tmp/console-bench-events.$$ || true)
bytes=$(grep '^data:' /tmp/console-bench-events.$$ | tail -1 | wc -c)
echo "  $messages messages in ${window} s; one message is $bytes bytes"
rm -f /tmp/console-bench-events.$$
pids=()
for i in $(seq 8); do curl -sfN "$api/console/events?limit=500" >/dev/null & pids+=($!); done
echo "CPU with 8 event streams: $(measure) % of one core"
kill "${pids[@]}"; wait "${pids[@]}" 2>/dev/null || true
echo "CPU after they closed: $(measure) % of one core"
