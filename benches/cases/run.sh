#!/usr/bin/env bash
# Runs one end-to-end case once with `quiverd run` and prints one JSON line with its figures:
# events/s end to end (process start to exit) and peak RSS.
#
#   benches/cases/run.sh CASE_DIR EVENTS_FILE WORKERS [QUIVERD]
#
# CASE_DIR holds stream.sql (reading DATASOURCE="events.jsonl", or "events.csv" for a
# delimited case), rule.json and optionally
# table.sql (a file table on DATASOURCE="devices.jsonl", generated here), plugins (lines
# "KIND PROJECT": plugin projects packaged and installed into the run's data dir), setup.sql
# and count.sql (run with the mariadb client on 127.0.0.1:3306 as root, database test:
# before the run, and after it to count the rows that landed); EVENTS_FILE is
# the input (JSON lines from `quiver-gen`, or the same readings as delimited lines for a case
# reading events.csv), substituted for the case's DATASOURCE as an absolute path.
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

stream=$(sed -E "s#DATASOURCE=\"events\.(jsonl|csv)\"#DATASOURCE=\"$events_file\"#" "$case_dir/stream.sql")
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

# A case with plugins gets them packaged as a user would and installed into a data dir of its
# own (what `POST /plugins/...` leaves there), which `quiverd run --data-dir` loads.
data_args=()
if [[ -f $case_dir/plugins ]]; then
    command -v unzip >/dev/null || { echo "run.sh needs unzip for $case_dir/plugins" >&2; exit 2; }
    while read -r kind project; do
        [[ -z $kind || $kind == \#* ]] && continue
        if ! zip=$("$root/scripts/package-plugin.sh" "$root/$project" 2> "$tmp/package.log" | tail -n 1); then
            cat "$tmp/package.log" >&2
            exit 1
        fi
        mkdir -p "$tmp/data/plugins/$kind"
        unzip -qo "$root/$zip" -d "$tmp/data/plugins/$kind"
    done < "$case_dir/plugins"
    data_args=(--data-dir "$tmp/data")
fi
mariadb_test() { mariadb -h 127.0.0.1 -P 3306 -u root -N -B test; }
if [[ -f $case_dir/setup.sql ]]; then
    mariadb_test < "$case_dir/setup.sql"
fi

start=$(date +%s.%N)
set +e
RUST_LOG=warn /usr/bin/time -f '%M' -o "$tmp/rss" \
    "$quiverd" run "${data_args[@]}" "${tables[@]}" --stream "$stream" --rule "$case_dir/rule.json" --workers "$workers" \
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
# Rows that landed in the database must be every row the sink received, and no more.
db_rows=null
if [[ -f $case_dir/count.sql ]]; then
    db_rows=$(mariadb_test < "$case_dir/count.sql")
    if [[ $db_rows != "$sink_rows" ]]; then
        echo "$(basename "$case_dir"): $db_rows rows in the database, the sink received $sink_rows" >&2
        cat "$tmp/status.json" >&2
        exit 1
    fi
fi
jq -cn \
    --arg case "$(basename "$case_dir")" \
    --argjson events "$events" \
    --argjson workers "$workers" \
    --argjson t0 "$start" \
    --argjson t1 "$end" \
    --argjson rss_kb "$(tail -n 1 "$tmp/rss")" \
    --argjson sink_rows "$sink_rows" \
    --argjson db_rows "$db_rows" \
    '($t1 - $t0) as $wall
     | {case: $case, events: $events, workers: $workers, wall_s: ($wall * 1000 | round / 1000),
        events_per_s: ($events / $wall | round), peak_rss_kb: $rss_kb, sink_rows: $sink_rows}
       + if $db_rows == null then {} else {db_rows: $db_rows} end'
