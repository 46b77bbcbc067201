"""W1 in DuckDB (batch reference): SELECT device, temperature WHERE temperature > 20.

Scans the JSON-lines file with read_json and an explicit schema (the stream's DDL, no
sampling), materializes the result rows in an in-memory table (DuckDB's analogue of a sink
receiving them) and counts them. 2 threads unless --workers says otherwise.
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
    con.execute(f"CREATE TEMP TABLE out AS SELECT device, temperature FROM {src} WHERE temperature > 20")
    (rows,) = con.execute("SELECT count(*) FROM out").fetchone()
    report("duckdb", "w1", args.workers, rows, t0, version=duckdb.__version__)


if __name__ == "__main__":
    main()
