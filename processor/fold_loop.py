"""CPU-only timing of the worker's per-event work, without Kafka: ``python -m processor.fold_loop``.

It generates the benchmark's synthetic load, then decodes and routes each
record with the worker's RecordRouter and folds it with its ExecutionFolder
into a WriteBackStore over dicts of serialized records, as the worker's
tables hold them. Every ``--batch-events`` events it serializes the
changelog values and the public views of the changed records, as a batch
write does. It prints microseconds per event for each step, so that a
change to the fold can be measured in seconds instead of with a broker.
The record size check runs as in a worker whose topics take
FLYTE_STATE_MAX_RECORD_BYTES, unless ``--no-size-check`` is given.
"""

from __future__ import annotations

import argparse
import sys
import time
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Optional

from google.protobuf.message import Message

from processor.benchmark import build_load
from processor.config import Settings
from processor.fold.execution import ExecutionFolder, RecordKind, StateChange
from processor.fold.public import public_bytes
from processor.fold.write_back import WriteBackStore
from processor.record_size import RecordSizeLimit
from processor.routing import FoldHere, InputRecord, RecordRouter

# The start of the generated load; any fixed time gives the same events for a seed.
LOAD_START = datetime(2026, 1, 1, tzinfo=timezone.utc)


class SerializedTables:
    """The backing store of the loop's WriteBackStore: serialized records by kind and key, as faust's tables hold them."""

    def __init__(self) -> None:
        self.values: dict[RecordKind, dict[bytes, bytes]] = {kind: {} for kind in RecordKind}

    def get(self, kind: RecordKind, key: str) -> Optional[Message]:
        raw = self.values[kind].get(key.encode())
        return None if raw is None else kind.parse(raw)


@dataclass
class LoopTimes:
    """Microseconds per event of each step of one pass over the load."""

    events: int
    route_us: float
    fold_us: float
    write_us: float

    @property
    def total_us(self) -> float:
        return self.route_us + self.fold_us + self.write_us


def run_loop(records: list[InputRecord], settings: Settings, batch_events: int, size_check: bool) -> LoopTimes:
    """Route, fold and write ``records`` once, into empty tables; return the time per event of each step."""
    router = RecordRouter(settings)
    tables = SerializedTables()
    store = WriteBackStore(tables)
    limit = RecordSizeLimit(settings.max_record_bytes, settings.max_record_bytes) if size_check else None
    folder = ExecutionFolder(store, limit)
    changes: dict[tuple[RecordKind, str], StateChange] = {}
    route_seconds = fold_seconds = write_seconds = 0.0

    for number, record in enumerate(records, start=1):
        started = time.perf_counter()
        route = router.route(record)
        routed = time.perf_counter()
        if not isinstance(route, FoldHere):
            raise ValueError(f"record {number} of the load was not routed to the fold: {route}")
        store.partition = record.partition
        result = folder.fold(route.event, enrichment=route.enrichment)
        for change in result.records_to_publish:
            changes[(change.kind, change.key)] = change
        folded = time.perf_counter()
        route_seconds += routed - started
        fold_seconds += folded - routed

        if number % batch_events == 0 or number == len(records):
            writes = store.take_writes()
            for write in writes:
                key = write.key.encode()
                if write.state is None:
                    tables.values[write.kind].pop(key, None)
                else:
                    tables.values[write.kind][key] = write.state.SerializeToString()
            for change in changes.values():
                if change.record is not None:
                    public_bytes(change.record)
            store.mark_stored(writes)
            changes.clear()
            write_seconds += time.perf_counter() - folded

    count = len(records)
    return LoopTimes(count, route_seconds / count * 1e6, fold_seconds / count * 1e6, write_seconds / count * 1e6)


def load_records(settings: Settings, events: int, executions: int, seed: int) -> list[InputRecord]:
    """Generate the benchmark's load and key each event to its execution's partition, as the worker reads it."""
    router = RecordRouter(settings)
    load = build_load(settings, events, executions, seed, LOAD_START)
    return [
        InputRecord(
            topic=event.topic,
            partition=router.partition_of(event.key),
            offset=offset,
            key=event.key,
            value=event.value,
            headers=[],
        )
        for offset, event in enumerate(load.events)
    ]


def main(argv: Optional[list[str]] = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m processor.fold_loop", description=__doc__.split("\n\n")[0])
    parser.add_argument("--events", type=int, default=60_000, help="events of the load (default 60000)")
    parser.add_argument("--executions", type=int, default=600, help="executions the load spreads over (default 600)")
    parser.add_argument("--seed", type=int, default=1, help="seed of the synthetic load (default 1)")
    parser.add_argument("--passes", type=int, default=3, help="passes over the load, each into empty tables (default 3)")
    parser.add_argument("--batch-events", type=int, default=1000, help="events between two writes (default 1000)")
    parser.add_argument("--no-size-check", action="store_true", help="fold without the record size check")
    options = parser.parse_args(argv)

    settings = Settings()
    records = load_records(settings, options.events, options.executions, options.seed)
    print(f"load: {len(records)} events of {options.executions} executions (seed {options.seed})")
    for number in range(1, options.passes + 1):
        times = run_loop(records, settings, options.batch_events, size_check=not options.no_size_check)
        print(
            f"pass {number}: {times.total_us:.1f} us per event: route {times.route_us:.1f}, "
            f"fold {times.fold_us:.1f}, write {times.write_us:.1f} ({1e6 / times.total_us:.0f} events/s)"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
