#!/usr/bin/env bash
# Runs the file-source end-to-end cases (W1 filter/project, W2 event-time tumbling window, W3
# stream-table join against a 10,000-row table, Quiver only) in
# Quiver at 1 and 2 workers and, on the same files in the same invocation, in the peer engines
# of benches/peers/ (DuckDB, Bytewax, Flink SQL via PyFlink), one process at a time, and prints
# a markdown table with wall time (process start to exit), events/s, peak RSS, result rows
# (checked against Quiver's) and the ratios Quiver/peer. Then it runs quiver-mqtt-bench (MQTT
# ingest against the broker's own ceiling, latency, many rules, idle footprint) against a
# private Mosquitto and appends its tables. MySQL: W1's output written into MariaDB
# (127.0.0.1:3306, root, database test) through the mysql sink plugin
# (benches/cases/file_to_mysql_w1), against the plain client loading the same rows as
# 1,000-row INSERTs and one INSERT per row (benches/cases/mysql_clients.sh).
#
#   scripts/bench.sh [--events 1000000,5000000] [--peers duckdb,bytewax,flink]
#                    [--workloads w1,w2] [--workers 1,2] [--repeat 1] [--data DIR]
#                    [--bytewax-workers 1,2] [--no-build] [--max-busy 0.25] [--idle-wait 300]
#                    [--mqtt footprint,ingest,latency,rules] [--mqtt-args "ARGS"]
#                    [--mysql-events N] [--out FILE]
#
#   --events      event counts; files DIR/events-N.jsonl are generated with quiver-gen unless
#                 present with N lines (default DIR: data/, gitignored); a workload whose case
#                 reads events.csv (w1_delimited) gets DIR/events-N.csv, the same readings as
#                 device,temperature,humidity,ts lines (written with jq)
#   --workloads   benches/cases/file_to_memory_<workload>: w1, w2, w3, w1_delimited
#   --peers       peers to run (default: all three; "none" for Quiver only). A peer that
#                 benches/peers/setup.sh could not install is reported and skipped; the venv
#                 is created by setup.sh on first use
#   --workers     Quiver worker counts (default 1,2). DuckDB runs with 2 threads and Flink at
#                 parallelism 2 (the machine's cores); Bytewax once per --bytewax-workers count
#                 (worker threads of one process; default 1,2: its Python steps share the GIL)
#   --repeat      runs per cell; the table keeps the fastest (default 1)
#   --max-busy    before each run, wait (at most --idle-wait seconds) until the other
#                 processes on the machine use less than this many cores, measured over 2 s;
#                 the busy figure seen is printed with each run so noisy cells can be spotted
#   --no-build    use target/release/quiverd, quiver-gen and quiver-mqtt-bench as they are
#   --mqtt        quiver-mqtt-bench phases (default: all four; "none" to skip; needs
#                 /usr/sbin/mosquitto). The rules phase takes several minutes
#   --mqtt-args   more quiver-mqtt-bench arguments, e.g. "--client-nodelay --broker-conf
#                 'set_tcp_nodelay true'" for latency without Nagle's algorithm on any hop
#   --mysql-events  events file for the MySQL case (default: the smallest --events; "none"
#                 to skip; skipped with a note when no MariaDB answers on 127.0.0.1:3306)
#   --out FILE    also write the table (and the raw JSON lines) to FILE
#
# Ratios: "time Q/peer" is Quiver's wall time at 2 workers (the highest --workers) divided by
# the peer's on the same file and workload (below 1: Quiver is faster; 0.05 = 20x faster);
# "RSS Q/peer" likewise for peak RSS. Needs jq and GNU time (/usr/bin/time; installed with
# apt-get when missing).
set -euo pipefail

root=$(cd "$(dirname "$0")/.." && pwd)
command_line="scripts/bench.sh${*:+ $*}"
events_list=1000000,5000000
peers_list=duckdb,bytewax,flink
workloads_list=w1,w2
workers_list=1,2
repeat=1
data_dir=$root/data
bytewax_workers=1,2
build=1
max_busy=0.25
idle_wait=300
out_file=
mqtt_phases=footprint,ingest,latency,rules
mqtt_args=
mysql_events=

while [[ $# -gt 0 ]]; do
    case $1 in
        --events) events_list=$2; shift 2 ;;
        --peers) peers_list=$2; shift 2 ;;
        --workloads) workloads_list=$2; shift 2 ;;
        --workers) workers_list=$2; shift 2 ;;
        --repeat) repeat=$2; shift 2 ;;
        --data) data_dir=$2; shift 2 ;;
        --bytewax-workers) bytewax_workers=$2; shift 2 ;;
        --no-build) build=0; shift ;;
        --max-busy) max_busy=$2; shift 2 ;;
        --idle-wait) idle_wait=$2; shift 2 ;;
        --out) out_file=$2; shift 2 ;;
        --mqtt) mqtt_phases=$2; shift 2 ;;
        --mqtt-args) mqtt_args=$2; shift 2 ;;
        --mysql-events) mysql_events=$2; shift 2 ;;
        -h|--help) sed -n '2,47p' "$0"; exit 0 ;;
        *) echo "bench.sh: unknown argument $1 (see --help)" >&2; exit 2 ;;
    esac
done
[[ $peers_list == none ]] && peers_list=
[[ $mqtt_phases == none ]] && mqtt_phases=
IFS=, read -ra events_arr <<< "$events_list"
IFS=, read -ra peers_arr <<< "$peers_list"
IFS=, read -ra workloads_arr <<< "$workloads_list"
IFS=, read -ra workers_arr <<< "$workers_list"
[[ -z $mysql_events ]] && mysql_events=$(printf '%s\n' "${events_arr[@]}" | sort -n | head -n 1)
[[ $mysql_events == none ]] && mysql_events=
q_ref_workers=$(printf '%s\n' "${workers_arr[@]}" | sort -n | tail -n 1)

log() { echo "bench: $*" >&2; }

# --- tools -------------------------------------------------------------------------------
command -v jq >/dev/null || { log "needs jq (apt-get install jq)"; exit 2; }
if [[ ! -x /usr/bin/time ]]; then
    log "installing GNU time"
    apt-get install -y time >/dev/null 2>&1 || { apt-get update >/dev/null && apt-get install -y time >/dev/null; }
fi

# --- Quiver, built once; the binaries are copied so that a rebuild by someone else during
# the run cannot swap them under the measurements ------------------------------------------
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
if [[ $build == 1 ]]; then
    log "building Quiver (release)"
    (cd "$root" && cargo build --release -p quiver-server -p quiver-benches --bins) >&2
fi
cp "$root/target/release/quiverd" "$root/target/release/quiver-gen" "$work/"
if [[ -n $mqtt_phases ]]; then
    cp "$root/target/release/quiver-mqtt-bench" "$work/"
fi
quiverd=$work/quiverd
revision=$(cd "$root" && git rev-parse --short HEAD 2>/dev/null || echo unknown)
if [[ -n $(cd "$root" && git status --porcelain --untracked-files=no 2>/dev/null) ]]; then
    revision="$revision+dirty"
fi

# --- data --------------------------------------------------------------------------------
mkdir -p "$data_dir"
data_dir=$(cd "$data_dir" && pwd)
gen_events=("${events_arr[@]}")
[[ -n $mysql_events ]] && gen_events+=("$mysql_events")
for n in $(printf '%s\n' "${gen_events[@]}" | sort -un); do
    f=$data_dir/events-$n.jsonl
    if [[ -f $f && $(wc -l < "$f" | tr -d ' ') == "$n" ]]; then
        log "using $f"
    else
        log "generating $f"
        "$work/quiver-gen" --events "$n" --out "$f" >&2
    fi
done

# The input of workload $1 over $2 events: events-N.jsonl, or events-N.csv when the case's
# stream reads delimited lines.
input_for() {
    if grep -q 'DATASOURCE="events.csv"' "$root/benches/cases/file_to_memory_$1/stream.sql"; then
        echo "$data_dir/events-$2.csv"
    else
        echo "$data_dir/events-$2.jsonl"
    fi
}
for n in "${events_arr[@]}"; do
    for wl in "${workloads_arr[@]}"; do
        f=$(input_for "$wl" "$n")
        [[ $f == *.csv ]] || continue
        if [[ -f $f && $(wc -l < "$f" | tr -d ' ') == "$n" ]]; then
            continue
        fi
        log "writing $f from events-$n.jsonl"
        jq -r '[.device, .temperature, .humidity, .ts] | map(tostring) | join(",")' \
            "$data_dir/events-$n.jsonl" > "$f.tmp"
        mv "$f.tmp" "$f"
    done
done

# --- peers -------------------------------------------------------------------------------
peers_dir=$root/benches/peers
venv=$peers_dir/.venv
if [[ ${#peers_arr[@]} -gt 0 && ! -f $venv/installed ]]; then
    log "no peer venv yet: running benches/peers/setup.sh ${peers_arr[*]}"
    "$peers_dir/setup.sh" "${peers_arr[@]}" || true
fi
declare -A peer_ok=()
for p in "${peers_arr[@]}"; do
    line=$(grep "^$p " "$venv/installed" 2>/dev/null || true)
    if [[ -z $line ]]; then
        "$peers_dir/setup.sh" "$p" || true
        line=$(grep "^$p " "$venv/installed" 2>/dev/null || true)
    fi
    if [[ -n $line && $line != *FAILED* ]]; then
        peer_ok[$p]=1
    else
        log "peer $p unavailable: ${line:-not installed}"
    fi
done

# --- measuring ---------------------------------------------------------------------------
# Cores used by everything on the machine over 2 s, from /proc/stat.
busy_cores() {
    local a b
    a=($(head -n 1 /proc/stat))
    sleep 2
    b=($(head -n 1 /proc/stat))
    awk -v u0="${a[1]}" -v n0="${a[2]}" -v s0="${a[3]}" -v i0="${a[4]}" -v w0="${a[5]}" \
        -v q0="${a[6]}" -v sq0="${a[7]}" -v st0="${a[8]}" \
        -v u1="${b[1]}" -v n1="${b[2]}" -v s1="${b[3]}" -v i1="${b[4]}" -v w1="${b[5]}" \
        -v q1="${b[6]}" -v sq1="${b[7]}" -v st1="${b[8]}" -v cores="$(nproc)" 'BEGIN {
        busy = (u1-u0) + (n1-n0) + (s1-s0) + (q1-q0) + (sq1-sq0) + (st1-st0)
        total = busy + (i1-i0) + (w1-w0)
        printf "%.2f", (total > 0 ? cores * busy / total : 0) }'
}

wait_quiet() {
    local waited=0 b
    while :; do
        b=$(busy_cores)
        if awk -v b="$b" -v m="$max_busy" 'BEGIN { exit !(b <= m) }' || (( waited >= idle_wait )); then
            echo "$b"
            return
        fi
        (( waited == 0 )) && log "machine busy ($b cores in use by others); waiting up to ${idle_wait}s"
        sleep 3
        waited=$(( waited + 5 ))
    done
}

# Peak of the summed RSS (kB) of a process tree, sampled every 0.2 s until the root exits:
# PyFlink's JVM is a child of the Python process that /usr/bin/time does not see reaped.
sample_tree_rss() {
    local root_pid=$1 out=$2 peak=0 cur
    while kill -0 "$root_pid" 2>/dev/null; do
        cur=$(ps -e -o pid=,ppid=,rss= | awk -v r="$root_pid" '
            { ppid[$1] = $2; rss[$1] = $3 }
            END { for (p in ppid) { q = p; while (q != "" && q != 0 && q != 1) {
                      if (q == r) { s += rss[p]; break } q = ppid[q] } } print s + 0 }')
        (( cur > peak )) && peak=$cur
        sleep 0.2
    done
    echo "$peak" > "$out"
}

# Thousands separators for the tables (1234567 -> 1,234,567).
jq_fmt_int='def fmt_int: tostring | if length > 3 then .[:-3] + "," + .[-3:] else . end
    | if length > 7 then .[:-7] + "," + .[-7:] else . end;'

results=$work/results.jsonl
: > "$results"

run_quiver() { # workload events_file workers busy
    local wl=$1 f=$2 w=$3 busy=$4 line
    if ! line=$("$root/benches/cases/run.sh" "$root/benches/cases/file_to_memory_$wl" "$f" "$w" "$quiverd"); then
        log "quiver $wl $w workers FAILED"
        jq -cn --arg wl "$wl" --argjson ev "$(wc -l < "$f")" --argjson w "$w" --arg busy "$busy" \
            '{engine: "quiver", workload: $wl, events: $ev, workers: $w, failed: true, busy: ($busy|tonumber)}' >> "$results"
        return
    fi
    echo "$line" | jq -c --arg wl "$wl" --arg busy "$busy" \
        '{engine: "quiver", workload: $wl, events, workers, wall_s, rss_kb: .peak_rss_kb,
          rows: .sink_rows, busy: ($busy|tonumber)}' | tee -a "$results" >&2
}

run_peer() { # peer workload events_file workers busy
    local p=$1 wl=$2 f=$3 w=$4 busy=$5 t0 t1 code rss tree_rss line
    local tmp=$work/run
    rm -rf "$tmp"; mkdir -p "$tmp"
    t0=$(date +%s.%N)
    ( cd "$peers_dir" && exec /usr/bin/time -v -o "$tmp/time" \
        "$venv/bin/python" "${p}_${wl}.py" "$f" --workers "$w" > "$tmp/stdout" 2> "$tmp/stderr" ) &
    local pid=$!
    sample_tree_rss "$pid" "$tmp/tree_rss" &
    local sampler=$!
    set +e
    wait "$pid"; code=$?
    set -e
    t1=$(date +%s.%N)
    wait "$sampler" || true
    local events; events=$(wc -l < "$f" | tr -d ' ')
    if [[ $code -ne 0 ]] || ! line=$(tail -n 1 "$tmp/stdout" | jq -c . 2>/dev/null); then
        log "$p $wl FAILED (exit $code); last lines of its stderr:"
        tail -n 20 "$tmp/stderr" >&2
        jq -cn --arg p "$p" --arg wl "$wl" --argjson ev "$events" --argjson w "$w" --arg busy "$busy" \
            '{engine: $p, workload: $wl, events: $ev, workers: $w, failed: true, busy: ($busy|tonumber)}' >> "$results"
        return
    fi
    rss=$(awk -F': ' '/Maximum resident set size/ { print $2 }' "$tmp/time")
    tree_rss=$(cat "$tmp/tree_rss" 2>/dev/null || echo 0)
    (( tree_rss > rss )) && rss=$tree_rss
    echo "$line" | jq -c --argjson ev "$events" --argjson t0 "$t0" --argjson t1 "$t1" \
        --argjson rss "$rss" --arg busy "$busy" \
        '{engine, workload, events: $ev, workers, wall_s: (($t1 - $t0) * 1000 | round / 1000),
          rss_kb: $rss, rows, inner_s, version, busy: ($busy|tonumber)}
         + (if has("late") then {late} else {} end)' | tee -a "$results" >&2
}

for n in "${events_arr[@]}"; do
    for wl in "${workloads_arr[@]}"; do
        f=$(input_for "$wl" "$n")
        for ((r = 1; r <= repeat; r++)); do
            for w in "${workers_arr[@]}"; do
                busy=$(wait_quiet)
                log "quiver $wl $n events, $w workers (run $r; others busy: $busy cores)"
                run_quiver "$wl" "$f" "$w" "$busy"
            done
            for p in "${peers_arr[@]}"; do
                [[ -n ${peer_ok[$p]:-} ]] || continue
                # Peers implement W1 and W2 only (W3, the table join, is Quiver's alone).
                [[ -f $peers_dir/${p}_${wl}.py ]] || continue
                pw=2
                [[ $p == bytewax ]] && pw=$bytewax_workers
                IFS=, read -ra pw_arr <<< "$pw"
                for w in "${pw_arr[@]}"; do
                    busy=$(wait_quiet)
                    log "$p $wl $n events, $w workers (run $r; others busy: $busy cores)"
                    run_peer "$p" "$wl" "$f" "$w" "$busy"
                done
            done
        done
    done
done

# --- table -------------------------------------------------------------------------------
table=$(jq -rs --argjson qw "$q_ref_workers" --arg peers "${peers_list}" "$jq_fmt_int"'
    def rate($ev; $s): ($ev / $s) as $r
        | if $r >= 1000000 then "\(($r / 10000 | round) / 100) M"
          elif $r >= 1000 then "\(($r / 100 | round) / 10) k" else "\($r | round)" end;
    def wname: if . == "w1" then "W1 filter/project" elif . == "w1_delimited" then "W1 filter/project, delimited lines"
        elif . == "w2" then "W2 event-time window" else "W3 join 10,000-row table" end;
    ([.[] | select(.failed | not)] | group_by([.engine, .workload, .events, .workers])
        | map(min_by(.wall_s))) as $best
    # A failed run shows only where no run of that cell succeeded.
    | [.[] | select(.failed)] | map(. as $f | select([$best[] | select(.engine == $f.engine
        and .workload == $f.workload and .events == $f.events and .workers == $f.workers)]
        | length == 0)) | unique_by([.engine, .workload, .events, .workers]) as $failed
    | ($best | map(select(.engine == "quiver" and .workers == $qw))) as $qref
    | "| workload | events | engine | workers | wall s | events/s | peak RSS MB | rows | rows = Quiver | time Q/peer | RSS Q/peer | others busy (cores) |",
      "|---|---|---|---|---|---|---|---|---|---|---|---|",
      ( ($best + $failed) | sort_by(.workload, .events,
            (if .engine == "quiver" then 0 else 1 end), .engine, .workers)[]
        | . as $r
        | ($qref | map(select(.workload == $r.workload and .events == $r.events)) | first) as $q
        | if .failed then
            "| \(.workload | wname) | \(.events | fmt_int) | \(.engine) | \(.workers) | failed | | | | | | | \(.busy) |"
          else
            "| \(.workload | wname) | \(.events | fmt_int) | \(.engine) | \(.workers) | \(.wall_s) | \(rate(.events; .wall_s)) | \((.rss_kb / 1024) | round) | \(.rows | fmt_int) | "
            + (if $q == null then "n/a" elif .rows == $q.rows then "yes" else "**NO (\($q.rows))**" end)
            + " | "
            + (if .engine == "quiver" or $q == null then "" else "\(($q.wall_s / .wall_s * 1000 | round) / 1000)" end)
            + " | "
            + (if .engine == "quiver" or $q == null then "" else "\(($q.rss_kb / .rss_kb * 100 | round) / 100)" end)
            + " | \(.busy) |"
          end )
' "$results")

{
    echo "Command: \`$command_line\`"
    echo
    echo "Quiver $revision; $(date -u '+%Y-%m-%d %H:%M UTC'); $(nproc) cores, $(free -g | awk '/^Mem:/ { print $2 }') GiB, $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | sed 's/^ //')"
    echo "Peers: $(tr '\n' ';' < "$venv/installed" 2>/dev/null | sed 's/;$//; s/;/; /g')"
    echo
    echo "$table"
    echo
    echo "time Q/peer and RSS Q/peer: Quiver at $q_ref_workers workers ÷ the peer, same file, same workload, same invocation (below 1: Quiver faster / smaller). Each cell: the fastest of $repeat run(s); others busy: cores used by other processes in the 2 s before that run."
} > "$work/table.md"

# --- MySQL: W1 into MariaDB through the plugin, against the plain client ------------------
if [[ -n $mysql_events ]]; then
    if ! command -v mariadb >/dev/null || ! mariadb -h 127.0.0.1 -P 3306 -u root -e 'SELECT 1' test >/dev/null 2>&1; then
        log "no MariaDB answering on 127.0.0.1:3306 (root, database test): MySQL case skipped"
        printf '\nMySQL case skipped: no MariaDB on 127.0.0.1:3306 (root, database test).\n' >> "$work/table.md"
    else
        f=$data_dir/events-$mysql_events.jsonl
        mysql_results=$work/mysql.jsonl
        : > "$mysql_results"
        # Plugin and client take turns, so a change of the database's pace hits both.
        for ((r = 1; r <= repeat; r++)); do
            busy=$(wait_quiet)
            log "quiver w1 -> mysql, $mysql_events events, $q_ref_workers workers (run $r; others busy: $busy cores)"
            if line=$("$root/benches/cases/run.sh" "$root/benches/cases/file_to_mysql_w1" "$f" "$q_ref_workers" "$quiverd"); then
                echo "$line" | jq -c '{kind: "plugin", rows: .db_rows, wall_s, rows_per_s: (.db_rows / .wall_s | round)}' \
                    | tee -a "$mysql_results" >&2
                log "mariadb client, the same rows (run $r)"
                if line=$("$root/benches/cases/mysql_clients.sh" bench_file_to_mysql_w1); then
                    echo "$line" | jq -c '{kind: "clients"} + .' | tee -a "$mysql_results" >&2
                else
                    log "mysql_clients.sh FAILED"
                fi
            else
                log "quiver w1 -> mysql FAILED"
            fi
        done
        {
            echo
            echo "## MySQL: W1's output into MariaDB through the mysql sink plugin (benches/cases/file_to_mysql_w1)"
            echo
            jq -rs --argjson ev "$mysql_events" --argjson qw "$q_ref_workers" "$jq_fmt_int"'
                ([.[] | select(.kind == "plugin")] | max_by(.rows_per_s)) as $p
                | ([.[] | select(.kind == "clients")] | max_by(.multi_row_rows_per_s)) as $m
                | ([.[] | select(.kind == "clients")] | max_by(.per_row_rows_per_s)) as $s
                | if $p == null or $m == null then "MySQL case failed; see the log."
                  else
                    "| events | rows written | Quiver (\($qw) workers, process start to exit) | client, 1,000-row INSERTs | client, one INSERT per row | Quiver / 1,000-row | Quiver / per-row |",
                    "|---|---|---|---|---|---|---|",
                    "| \($ev | fmt_int) | \($p.rows | fmt_int) | \($p.rows_per_s | fmt_int) rows/s (\($p.wall_s) s) | \($m.multi_row_rows_per_s | fmt_int) rows/s | \($s.per_row_rows_per_s | fmt_int) rows/s (\($s.per_row_rows | fmt_int) rows) | \(($p.rows_per_s / $m.multi_row_rows_per_s * 100 | round))% | \(($p.rows_per_s / $s.per_row_rows_per_s | round))× |",
                    "",
                    "Best of \(length / 2 | floor) run(s) each; every INSERT autocommitted by the client; the plugin writes each batch as prepared multi-row INSERTs in one transaction."
                  end' "$mysql_results"
        } >> "$work/table.md"
        cat "$mysql_results" >> "$results"
    fi
fi

# --- MQTT: ingest, latency, many rules, footprint ---------------------------------------------
if [[ -n $mqtt_phases ]]; then
    if [[ -x /usr/sbin/mosquitto ]]; then
        log "quiver-mqtt-bench --phases $mqtt_phases $mqtt_args"
        # Word splitting of --mqtt-args is wanted; quotes inside it are honoured by eval.
        if eval "\"$work/quiver-mqtt-bench\" --quiverd \"$quiverd\" --phases \"$mqtt_phases\" $mqtt_args" \
            > "$work/mqtt.md"; then
            status=ok
        else
            status="failed (exit $?)"
        fi
        {
            echo
            echo "## MQTT (quiver-mqtt-bench --phases $mqtt_phases${mqtt_args:+ $mqtt_args}: $status)"
            sed -n '/^## Results/,$p' "$work/mqtt.md" | tail -n +2
        } >> "$work/table.md"
    else
        log "no /usr/sbin/mosquitto: MQTT phases skipped (apt-get install mosquitto)"
        printf '\nMQTT phases skipped: no /usr/sbin/mosquitto.\n' >> "$work/table.md"
    fi
fi

cat "$work/table.md"
if [[ -n $out_file ]]; then
    { cat "$work/table.md"; echo; echo '```'; cat "$results"; echo '```'; } > "$out_file"
    log "wrote $out_file"
fi
