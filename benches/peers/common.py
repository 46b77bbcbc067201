"""Shared bits of the peer scripts: argument parsing and the one JSON line each prints.

Every peer script is run as `python <peer>_<workload>.py EVENTS_FILE [--workers N]` and prints,
as its last stdout line, `{"engine", "workload", "workers", "rows", "inner_s"}`: `rows` is
the number of result rows the engine produced (W1: events with temperature > 20; W2: distinct
(10 s window, device) pairs) and `inner_s` the time from the top of the script (before the engine's
import) to the report (interpreter start-up excluded). The figure that goes in the
table is the wall time of the whole process, measured outside by scripts/bench.sh.
"""

import argparse
import json
import os
import sys
import time


def parse_args(default_workers=2):
    p = argparse.ArgumentParser()
    p.add_argument("events_file")
    p.add_argument("--workers", type=int, default=default_workers,
                   help="threads / workers / parallelism the engine may use")
    args = p.parse_args()
    args.events_file = os.path.abspath(args.events_file)
    if not os.path.isfile(args.events_file):
        sys.exit(f"no events file {args.events_file}")
    return args


def report(engine, workload, workers, rows, t0, **extra):
    line = {"engine": engine, "workload": workload, "workers": workers, "rows": int(rows),
            "inner_s": round(time.perf_counter() - t0, 3)}
    line.update(extra)
    print(json.dumps(line), flush=True)
