#!/usr/bin/env bash
# W2 from the file source at qos 0, 1 and 2 (checkpoints, issue 20 item 9): what the input log
# and the checkpoints cost a rule that reads a file.
#
#   scripts/bench-file-qos.sh [--events N] [--rounds R] [--workers W]
#
# Builds quiverd and quiver-gen (release), writes N seeded readings (default 1,000,000), then
# runs the cases below R times (default 3), interleaved round by round so the machine's noise
# falls on every case alike. Each run is a fresh quiverd with its own data directory: the time
# is from the rule's creation (POST /rules answered) to its status saying "stopped", "input
# ended", read every 20 ms; at qos 1 and 2 that is once the input's last checkpoint is durable
# (and at qos 2, once its rows are committed). W2 is the file case's rule
# (`benches/cases/file_to_memory_w2`: event time, 10 s tumbling window, 1,000 devices) with
# its aggregates named, so the SQL sink has columns to write; `checkpointInterval` is 1000 ms.
#
# | case | sink |
# |---|---|
# | memory, qos 0 / 1 | `memory` with no subscriber |
# | mariadb, qos 0 / 1 / 2 | `sql` into MariaDB at 127.0.0.1:3306 (root, database test) |
#
# Fails when a run does not read every line, or when a MariaDB table holds another number of
# rows than qos 0's (one per window and device: at qos 2 each exactly once). Prints a Markdown
# row per run, then the medians.
set -euo pipefail
cd "$(dirname "$0")/.."

events=1000000
rounds=3
workers=2
while [[ $# -gt 0 ]]; do
    case $1 in
        --events) events=$2; shift 2 ;;
        --rounds) rounds=$2; shift 2 ;;
        --workers) workers=$2; shift 2 ;;
        *) sed -n '2,23p' "$0" >&2; exit 2 ;;
    esac
done
for tool in jq curl mariadb; do
    command -v "$tool" >/dev/null || { echo "bench-file-qos.sh needs $tool" >&2; exit 2; }
done

cargo build --release --locked -p quiver-server --bin quiverd -p quiver-benches --bin quiver-gen >&2
quiverd=$PWD/target/release/quiverd
work=$(mktemp -d)
pid=
cleanup() {
    [[ -n $pid ]] && kill "$pid" 2>/dev/null && wait "$pid" 2>/dev/null
    rm -rf "$work"
}
trap cleanup EXIT
target/release/quiver-gen --events "$events" --out "$work/events.jsonl" >&2
bytes=$(stat -c %s "$work/events.jsonl")

sql='SELECT device, avg(temperature) AS t, count(*) AS c, max(humidity) AS h FROM demo GROUP BY device, TUMBLINGWINDOW(ss, 10)'
stream="CREATE STREAM demo (device STRING, temperature FLOAT, humidity BIGINT, ts BIGINT) WITH (DATASOURCE=\\\"$work/events.jsonl\\\", TYPE=\\\"file\\\", FORMAT=\\\"json\\\", TIMESTAMP=\\\"ts\\\")"

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
now_ms() { date +%s%3N; }

# run CASE SINK QOS: one fresh quiverd, one rule; prints "ms rows_in sink_rows ckpt_bytes ckpt_ms epoch".
run() {
    local name=$1 sink=$2 qos=$3
    local dir=$work/$name-$RANDOM port push table action
    port=$(free_port); push=$(free_port)
    "$quiverd" --bind "127.0.0.1:$port" --push-bind "127.0.0.1:$push" --data-dir "$dir" \
        --workers "$workers" >"$work/quiverd.log" 2>&1 &
    pid=$!
    for _ in $(seq 100); do curl -fs "127.0.0.1:$port/ping" >/dev/null && break; sleep 0.05; done
    curl -fs -XPOST "127.0.0.1:$port/streams" -H 'content-type: application/json' \
        -d "{\"sql\": \"$stream\"}" >/dev/null
    if [[ $sink == mariadb ]]; then
        table=bench_w2_qos${qos}_$$
        mariadb -h127.0.0.1 -uroot test -e "DROP TABLE IF EXISTS $table; CREATE TABLE $table (device VARCHAR(32), t DOUBLE, c BIGINT, h BIGINT)"
        action="{\"sql\": {\"url\": \"mysql://root@127.0.0.1:3306/test\", \"table\": \"$table\"}}"
    else
        action='{"memory": {"topic": "bench/out"}}'
    fi
    local rule="{\"id\": \"w2\", \"sql\": \"$sql\", \"actions\": [$action],
        \"options\": {\"isEventTime\": true, \"lateTolerance\": 0, \"qos\": $qos, \"checkpointInterval\": 1000}}"
    curl -fs -XPOST "127.0.0.1:$port/rules" -H 'content-type: application/json' -d "$rule" >/dev/null
    local start status
    start=$(now_ms)
    while :; do
        status=$(curl -fs "127.0.0.1:$port/rules/w2/status")
        [[ $(jq -r .status <<<"$status") == running ]] || break
        sleep 0.02
    done
    local end; end=$(now_ms)
    if [[ $(jq -r '.status + "/" + .message' <<<"$status") != "stopped/input ended" ]]; then
        echo "$name qos $qos: $(jq -c '{status, message}' <<<"$status")" >&2
        exit 1
    fi
    local rows_in sink_rows=-
    rows_in=$(jq '[to_entries[] | select(.key | test("^source_.*_records_in_total$")) | .value] | add' <<<"$status")
    if [[ $sink == mariadb ]]; then
        sink_rows=$(mariadb -h127.0.0.1 -uroot test -N -e "SELECT count(*) FROM $table")
        mariadb -h127.0.0.1 -uroot test -e "DROP TABLE $table"
    fi
    [[ $rows_in == "$events" ]] || { echo "$name qos $qos read $rows_in of $events rows" >&2; exit 1; }
    echo "$((end - start)) $rows_in $sink_rows $(jq -r '[.checkpoint_last_bytes // "-", .checkpoint_last_duration_ms // "-", .checkpoint_last_epoch // "-"] | join(" ")' <<<"$status")"
    kill "$pid"; wait "$pid" 2>/dev/null || true; pid=
    rm -rf "$dir"
}

cases=("memory 0" "memory 1" "mariadb 0" "mariadb 1" "mariadb 2")
declare -A times
echo "W2 from the file source: $events events ($bytes bytes), $workers workers, $rounds rounds; $(nproc) CPUs, load $(cut -d' ' -f1-3 /proc/loadavg)"
echo
echo "| round | sink | qos | ms to input ended | events/s | sink rows | last checkpoint bytes | ms | epoch |"
echo "|---|---|---|---|---|---|---|---|---|"
expected_rows=
for r in $(seq "$rounds"); do
    for c in "${cases[@]}"; do
        read -r sink qos <<<"$c"
        read -r ms rows_in sink_rows cbytes cms epoch <<<"$(run "$sink-q$qos" "$sink" "$qos")"
        if [[ $sink == mariadb ]]; then
            # Every qos writes the same windows: one row per (window, device), exactly once.
            expected_rows=${expected_rows:-$sink_rows}
            [[ $sink_rows == "$expected_rows" ]] || { echo "mariadb qos $qos wrote $sink_rows rows, qos 0 wrote $expected_rows" >&2; exit 1; }
        fi
        times["$c"]+="$ms "
        echo "| $r | $sink | $qos | $ms | $((events * 1000 / (ms > 0 ? ms : 1))) | $sink_rows | $cbytes | $cms | $epoch |"
    done
done
echo
echo "| sink | qos | median ms | median events/s | / qos 0 same sink |"
echo "|---|---|---|---|---|"
declare -A medians
for c in "${cases[@]}"; do
    read -r sink qos <<<"$c"
    m=$(tr ' ' '\n' <<<"${times[$c]}" | grep . | sort -n | awk '{a[NR]=$1} END {print a[int((NR+1)/2)]}')
    medians["$c"]=$m
    base=${medians["$sink 0"]}
    echo "| $sink | $qos | $m | $((events * 1000 / m)) | $(awk -v a="$base" -v b="$m" 'BEGIN {printf "%.2f", a / b}') |"
done
