#!/usr/bin/env bash
# Runs one end-to-end case once with `quiverd run` and prints one JSON line with its figures:
# events/s end to end (process start to exit) and peak RSS.
#
#   benches/cases/run.sh CASE_DIR EVENTS_FILE WORKERS [QUIVERD]
#
# CASE_DIR holds stream.sql (reading DATASOURCE="events.jsonl"), rule.json and optionally
# table.sql (a file table on DATASOURCE="devices.jsonl", generated here); EVENTS_FILE is
# the JSON-lines input (from `quiver-gen`), substituted for events.jsonl as an absolute path.
# QUIVERD defaults to target/release/quiverd. Fails unless the rule finished and its source
# read every line of the file.
set -euo pipefail

if [[ $# -lt 3 ]]; then
    sed -n '2,10p' "$0" >&2
    exit 2
fi
case_dir=$(cd "$1" && pwd)
events_file=$(cd "$(dirname "$2")" && pwd)/$(basename "$2")
workers=$3
root=$(cd "$(dirname "$0")/../.." && pwd)
quiverd=${4:-$root/target/release/quiverd}
command -v jq >/dev/null || { echo "run.sh needs jq" >&2; exit 2; }
[[ -x $quiverd ]] || { echo "no quiverd at $quiverd (cargo build --release -p quiver-server)" >&2; exit 2; }
[[ -f $events_file ]] || { echo "no events file $events_file (quiver-gen --events N --out FILE)" >&2; exit 2; }

stream=$(sed "s|DATASOURCE=\"events.jsonl\"|DATASOURCE=\"$events_file\"|" "$case_dir/stream.sql")
events=$(wc -l < "$events_file" | tr -d ' ')
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
# A case with table.sql joins a device table: 10,000 rows written here (see its README).
tables=()
if [[ -f $case_dir/table.sql ]]; then
    awk 'BEGIN { for (i = 0; i < 10000; i++)
        printf "{\"id\":\"dev-%d\",\"location\":\"hall-%d\",\"threshold\":%d}\n", i, i % 50, 15 + i % 10 }' \
        > "$tmp/devices.jsonl"
    tables=(--stream "$(sed "s|DATASOURCE=\"devices.jsonl\"|DATASOURCE=\"$tmp/devices.jsonl\"|" "$case_dir/table.sql")")
fi

start=$(date +%s.%N)
set +e
RUST_LOG=warn /usr/bin/time -f '%M' -o "$tmp/rss" \
    "$quiverd" run "${tables[@]}" --stream "$stream" --rule "$case_dir/rule.json" --workers "$workers" \
    > "$tmp/status.json" 2> "$tmp/stderr"
code=$?
set -e
end=$(date +%s.%N)

if [[ $code -ne 0 ]]; then
    echo "$(basename "$case_dir"): quiverd exited $code" >&2
    cat "$tmp/stderr" "$tmp/status.json" >&2
    exit 1
fi
status=$(jq -r .status "$tmp/status.json")
read_rows=$(jq '[to_entries[] | select(.key | test("^source_.*_records_in_total$")) | .value] | add' "$tmp/status.json")
sink_rows=$(jq '[to_entries[] | select(.key | test("^sink_.*_records_in_total$")) | .value] | add' "$tmp/status.json")
if [[ $status != stopped || $read_rows != "$events" ]]; then
    echo "$(basename "$case_dir"): status \"$status\", read $read_rows of $events rows" >&2
    cat "$tmp/status.json" >&2
    exit 1
fi
jq -cn \
    --arg case "$(basename "$case_dir")" \
    --argjson events "$events" \
    --argjson workers "$workers" \
    --argjson t0 "$start" \
    --argjson t1 "$end" \
    --argjson rss_kb "$(tail -n 1 "$tmp/rss")" \
    --argjson sink_rows "$sink_rows" \
    '($t1 - $t0) as $wall
     | {case: $case, events: $events, workers: $workers, wall_s: ($wall * 1000 | round / 1000),
        events_per_s: ($events / $wall | round), peak_rss_kb: $rss_kb, sink_rows: $sink_rows}'
