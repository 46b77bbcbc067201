#!/usr/bin/env bash
# The references for a case that writes into MariaDB: the same rows loaded by the plain
# `mariadb` client, (1) as autocommitted 1,000-row INSERT statements (the multi-row ceiling)
# and (2) as one autocommitted INSERT per row (the approach of eKuiper's tutorial sample).
# Prints one JSON line with rows/s for both.
#
#   benches/cases/mysql_clients.sh TABLE [PER_ROW_ROWS]
#
# TABLE (in database test on 127.0.0.1:3306, user root) holds the rows a case wrote, e.g.
# bench_file_to_mysql_w1 after `run.sh benches/cases/file_to_mysql_w1 ...`; they are read back
# and loaded into TABLE_client, a copy of its definition, which is dropped at the end.
# PER_ROW_ROWS (default 2,000) of them are loaded one INSERT at a time.
set -euo pipefail

if [[ $# -lt 1 ]]; then
    sed -n '2,12p' "$0" >&2
    exit 2
fi
table=$1
per_row=${2:-2000}
[[ $table =~ ^[A-Za-z_][A-Za-z0-9_]*$ ]] || { echo "mysql_clients.sh: bad table name $table" >&2; exit 2; }
copy=${table}_client
db() { mariadb -h 127.0.0.1 -P 3306 -u root -N -B test "$@"; }
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"; db -e "DROP TABLE IF EXISTS \`$copy\`" 2>/dev/null || true' EXIT

columns=$(db -e "SELECT GROUP_CONCAT(CONCAT('\`', column_name, '\`') ORDER BY ordinal_position)
    FROM information_schema.columns WHERE table_schema = 'test' AND table_name = '$table'")
[[ -n $columns && $columns != NULL ]] || { echo "mysql_clients.sh: no table test.$table" >&2; exit 2; }
# QUOTE() gives each value as an SQL literal (strings quoted and escaped, NULL as NULL), so
# the statements below carry exactly the rows the case wrote.
db -e "SELECT CONCAT('(', CONCAT_WS(',', $(echo "$columns" | sed 's/`\([^`]*\)`/QUOTE(`\1`)/g')), ')') FROM \`$table\`" \
    > "$tmp/values"
rows=$(wc -l < "$tmp/values" | tr -d ' ')
(( rows > 0 )) || { echo "mysql_clients.sh: test.$table is empty" >&2; exit 2; }
awk -v t="$copy" -v c="$columns" '
    NR % 1000 == 1 { if (NR > 1) print ";"; printf "INSERT INTO `%s` (%s) VALUES %s", t, c, $0; next }
    { printf ",%s", $0 }
    END { print ";" }' "$tmp/values" > "$tmp/multi.sql"
head -n "$per_row" "$tmp/values" | awk -v t="$copy" -v c="$columns" \
    '{ printf "INSERT INTO `%s` (%s) VALUES %s;\n", t, c, $0 }' > "$tmp/single.sql"
per_row=$(wc -l < "$tmp/single.sql" | tr -d ' ')

fresh() { db -e "DROP TABLE IF EXISTS \`$copy\`; CREATE TABLE \`$copy\` LIKE \`$table\`"; }
timed() { # file -> seconds
    local t0 t1
    t0=$(date +%s.%N)
    db < "$1"
    t1=$(date +%s.%N)
    # At least a millisecond, so a tiny load still gives a rate.
    echo "$t0 $t1" | awk '{ d = $2 - $1; printf "%.3f", (d < 0.001 ? 0.001 : d) }'
}
fresh
multi_s=$(timed "$tmp/multi.sql")
[[ $(db -e "SELECT COUNT(*) FROM \`$copy\`") == "$rows" ]] || { echo "mysql_clients.sh: multi-row load lost rows" >&2; exit 1; }
fresh
single_s=$(timed "$tmp/single.sql")
[[ $(db -e "SELECT COUNT(*) FROM \`$copy\`") == "$per_row" ]] || { echo "mysql_clients.sh: per-row load lost rows" >&2; exit 1; }

jq -cn --arg table "$table" --argjson rows "$rows" --argjson multi_s "$multi_s" \
    --argjson per_row "$per_row" --argjson single_s "$single_s" \
    '{table: $table, rows: $rows, multi_row_s: $multi_s, multi_row_rows_per_s: ($rows / $multi_s | round),
      per_row_rows: $per_row, per_row_s: $single_s, per_row_rows_per_s: ($per_row / $single_s | round)}'
