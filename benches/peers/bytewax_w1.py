"""W1 in Bytewax: file input -> parse JSON -> filter temperature > 20 -> (device, temperature)
-> counting sink. `--workers` sets the worker threads (default 1: the GIL makes more slower)."""

import time

t0 = time.perf_counter()
import json  # noqa: E402

import bytewax  # noqa: E402,F401
import bytewax.operators as op  # noqa: E402
from bytewax.dataflow import Dataflow  # noqa: E402

from bytewax_common import CountingSink, file_source, run  # noqa: E402
from common import parse_args, report  # noqa: E402


def main():
    args = parse_args(default_workers=1)
    flow = Dataflow("w1")
    lines = op.input("in", flow, file_source(args.events_file))
    events = op.map("parse", lines, json.loads)
    hot = op.filter("hot", events, lambda e: e["temperature"] > 20)
    out = op.map("project", hot, lambda e: (e["device"], e["temperature"]))
    sink = CountingSink()
    op.output("out", out, sink)
    run(flow, args.workers)
    from importlib.metadata import version
    report("bytewax", "w1", args.workers, sink.rows, t0, version=version("bytewax"))


if __name__ == "__main__":
    main()
