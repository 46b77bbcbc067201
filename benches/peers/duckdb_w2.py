"""W2 in DuckDB (batch reference): avg(temperature), count(*), max(humidity) per device and
10 s window, as GROUP BY device, ts // 10000 (windows aligned to the epoch, as Quiver's).

Scans the JSON-lines file with read_json and an explicit schema, materializes the groups in
an in-memory table and counts them. 2 threads unless --workers says otherwise.
"""

import time

t0 = time.perf_counter()
import duckdb  # noqa: E402

from common import parse_args, report  # noqa: E402

COLUMNS = "{'device': 'VARCHAR', 'temperature': 'DOUBLE', 'humidity': 'BIGINT', 'ts': 'BIGINT'}"


def main():
    args = parse_args()
    con = duckdb.connect(":memory:")
    con.execute(f"SET threads = {args.workers}")
    con.execute("SET preserve_insertion_order = false")
    src = f"read_json('{args.events_file}', format = 'newline_delimited', columns = {COLUMNS})"
    con.execute(f"""
        CREATE TEMP TABLE out AS
        SELECT (ts // 10000) * 10000 AS window_start, device,
               avg(temperature) AS avg_temperature, count(*) AS n, max(humidity) AS max_humidity
        FROM {src}
        GROUP BY device, ts // 10000""")
    (rows,) = con.execute("SELECT count(*) FROM out").fetchone()
    report("duckdb", "w2", args.workers, rows, t0, version=duckdb.__version__)


if __name__ == "__main__":
    main()
