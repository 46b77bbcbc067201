"""W1 in Flink SQL (PyFlink, local mini-cluster, parallelism 2 unless --workers):
INSERT INTO sink_out SELECT device, temperature FROM demo WHERE temperature > 20."""

import time

t0 = time.perf_counter()
from flink_common import count_rows, create_sink, create_source, table_env  # noqa: E402
from common import parse_args, report  # noqa: E402


def main():
    args = parse_args()
    env = table_env(args.workers)
    create_source(env, args.events_file, event_time=False)
    out = create_sink(env, "device STRING, temperature DOUBLE")
    env.execute_sql(
        "INSERT INTO sink_out SELECT device, temperature FROM demo WHERE temperature > 20"
    ).wait()
    rows, files = count_rows(out)
    from importlib.metadata import version
    report("flink", "w1", args.workers, rows, t0, files=files,
           version=version("apache-flink"))


if __name__ == "__main__":
    main()
