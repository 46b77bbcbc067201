"""W2 in Flink SQL (PyFlink, local mini-cluster, parallelism 2 unless --workers): event-time
tumbling window of 10 s on rt = TO_TIMESTAMP_LTZ(ts, 3) with WATERMARK FOR rt AS rt,
grouped by device, avg(temperature), count(*), max(humidity) (the group-window TUMBLE
syntax, as eKuiper's GROUP BY ... TUMBLINGWINDOW)."""

import time

t0 = time.perf_counter()
from flink_common import count_rows, create_sink, create_source, table_env  # noqa: E402
from common import parse_args, report  # noqa: E402


def main():
    args = parse_args()
    env = table_env(args.workers)
    create_source(env, args.events_file, event_time=True)
    out = create_sink(env, "window_start TIMESTAMP(3), device STRING, avg_temperature DOUBLE, "
                           "n BIGINT, max_humidity BIGINT")
    env.execute_sql("""
        INSERT INTO sink_out
        SELECT TUMBLE_START(rt, INTERVAL '10' SECOND), device,
               AVG(temperature), COUNT(*), MAX(humidity)
        FROM demo
        GROUP BY device, TUMBLE(rt, INTERVAL '10' SECOND)""").wait()
    rows, files = count_rows(out)
    from importlib.metadata import version
    report("flink", "w2", args.workers, rows, t0, files=files,
           version=version("apache-flink"))


if __name__ == "__main__":
    main()
