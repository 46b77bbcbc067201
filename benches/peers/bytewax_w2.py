"""W2 in Bytewax: file input -> parse JSON -> key by device -> event-time tumbling window of
10 s on `ts` (EventClock, no wait, windows aligned to the epoch) folding sum/count/max ->
(device, window, avg, count, max) -> counting sink. `--workers` sets the worker threads
(default 1: the GIL makes more slower)."""

import time

t0 = time.perf_counter()
import json  # noqa: E402
from datetime import datetime, timedelta, timezone  # noqa: E402

import bytewax.operators as op  # noqa: E402
import bytewax.operators.windowing as win  # noqa: E402
from bytewax.dataflow import Dataflow  # noqa: E402
from bytewax.operators.windowing import EventClock, TumblingWindower  # noqa: E402

from bytewax_common import CountingSink, file_source, run  # noqa: E402
from common import parse_args, report  # noqa: E402

EPOCH = datetime(1970, 1, 1, tzinfo=timezone.utc)


def event_time(e):
    return EPOCH + timedelta(milliseconds=e["ts"])


def fold(acc, e):
    acc[0] += e["temperature"]
    acc[1] += 1
    h = e["humidity"]
    if acc[2] is None or h > acc[2]:
        acc[2] = h
    return acc


def merge(a, b):
    return [a[0] + b[0], a[1] + b[1], max(x for x in (a[2], b[2]) if x is not None)]


def finish(key_win):
    device, (window_id, (total, count, max_h)) = key_win
    return (device, window_id, total / count, count, max_h)


def main():
    args = parse_args(default_workers=1)
    flow = Dataflow("w2")
    lines = op.input("in", flow, file_source(args.events_file))
    events = op.map("parse", lines, json.loads)
    keyed = op.key_on("by_device", events, lambda e: e["device"])
    # Watermark = latest event time seen (no wait). EventClock adds the system time elapsed
    # since that event, which makes events of a device seen again a few ms of event time later
    # "late" when processing is slow; a frozen now_getter removes that, and no wake-ups on
    # system time, so windows close on later events or at end of input, as in Quiver's
    # event-time windows with lateTolerance 0. The script reports the late count (0).
    clock = EventClock(event_time, wait_for_system_duration=timedelta(0),
                       now_getter=lambda: EPOCH, to_system_utc=lambda _t: None)
    windower = TumblingWindower(length=timedelta(seconds=10), align_to=EPOCH)
    windows = win.fold_window("window", keyed, clock, windower,
                              builder=lambda: [0.0, 0, None], folder=fold, merger=merge)
    out = op.map("finish", windows.down, finish)
    sink = CountingSink()
    op.output("out", out, sink)
    late = CountingSink()
    op.output("late", windows.late, late)
    run(flow, args.workers)
    from importlib.metadata import version
    report("bytewax", "w2", args.workers, sink.rows, t0, late=late.rows,
           version=version("bytewax"))


if __name__ == "__main__":
    main()
