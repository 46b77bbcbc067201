"""Pieces shared by the Flink SQL scripts: the table environment, the source table and the
sink, and counting the sink's rows.

Flink runs as a local mini-cluster inside the JVM that PyFlink starts (no Python UDFs, so
no Python worker: the whole job is Java). The source is the filesystem connector with the
json format (bounded: the job finishes at end of file, and the final watermark closes every
window). The sink is the filesystem connector writing CSV into a temporary directory; its
lines are counted after the job has finished, then the directory is removed.
"""

import glob
import os
import shutil
import tempfile

from pyflink.table import EnvironmentSettings, TableEnvironment


def table_env(parallelism):
    env = TableEnvironment.create(EnvironmentSettings.in_streaming_mode())
    conf = env.get_config()
    conf.set("parallelism.default", str(parallelism))
    conf.set("pipeline.name", "quiver-peer")
    # A bounded job in streaming mode: the sink commits its files at end of input.
    conf.set("execution.checkpointing.checkpoints-after-tasks-finish.enabled", "true")
    return env


def create_source(env, path, event_time):
    watermark = ""
    if event_time:
        # Event time on ts (epoch ms), watermark = the largest ts seen (no delay), as Quiver's
        # lateTolerance 0.
        watermark = ", rt AS TO_TIMESTAMP_LTZ(ts, 3), WATERMARK FOR rt AS rt"
    env.execute_sql(f"""
        CREATE TEMPORARY TABLE demo (
            device STRING, temperature DOUBLE, humidity BIGINT, ts BIGINT{watermark}
        ) WITH (
            'connector' = 'filesystem',
            'path' = 'file://{path}',
            'format' = 'json'
        )""")


def create_sink(env, columns):
    out = tempfile.mkdtemp(prefix="flink-peer-")
    env.execute_sql(f"""
        CREATE TEMPORARY TABLE sink_out ({columns}) WITH (
            'connector' = 'filesystem',
            'path' = 'file://{out}',
            'format' = 'csv'
        )""")
    return out


def count_rows(out):
    """Lines in every file the sink wrote, committed or not (hidden in-progress files too)."""
    rows = 0
    files = 0
    for f in glob.glob(os.path.join(out, "**", "*"), recursive=True) + \
            glob.glob(os.path.join(out, "**", ".*"), recursive=True):
        if os.path.isfile(f) and not f.endswith(".crc"):
            files += 1
            with open(f, "rb") as fh:
                rows += sum(1 for _ in fh)
    shutil.rmtree(out, ignore_errors=True)
    return rows, files
