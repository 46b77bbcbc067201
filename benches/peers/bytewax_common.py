"""Pieces shared by the Bytewax scripts: the file input, a counting sink and the runner."""

import threading

from bytewax.connectors.files import FileSource
from bytewax.outputs import DynamicSink, StatelessSinkPartition
from bytewax.run import cli_main

# Lines handed to the dataflow per batch by the file source (its default is 1,000).
BATCH = 1000


class _Counter:
    def __init__(self):
        self.rows = 0
        self.lock = threading.Lock()


class _CountingPartition(StatelessSinkPartition):
    def __init__(self, counter):
        self.counter = counter

    def write_batch(self, items):
        with self.counter.lock:
            self.counter.rows += len(items)


class CountingSink(DynamicSink):
    """A no-op sink that counts the rows it receives, across all workers of the process."""

    def __init__(self):
        self.counter = _Counter()

    def build(self, step_id, worker_index, worker_count):
        return _CountingPartition(self.counter)

    @property
    def rows(self):
        return self.counter.rows


def file_source(path):
    # One partition per file: a single worker reads it, the others get the data through
    # Bytewax's exchange (after key_on for W2).
    return FileSource(path, batch_size=BATCH)


def run(flow, workers):
    # Workers are threads of this process (timely dataflow workers); the Python callbacks
    # still share the GIL.
    cli_main(flow, workers_per_process=workers)
