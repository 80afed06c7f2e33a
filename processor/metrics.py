"""Counters of the worker, as Prometheus metrics of the standard client library."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

REGISTRY = CollectorRegistry(auto_describe=True)

EVENTS_CONSUMED = Counter(
    "flyte_state_events_consumed",
    "Records read from the input and repartition topics",
    ["topic"],
    registry=REGISTRY,
)

EVENTS_FOLDED = Counter(
    "flyte_state_events_folded",
    "Events folded, by event kind and outcome (applied or a rejection reason)",
    ["kind", "outcome"],
    registry=REGISTRY,
)

EVENTS_REPARTITIONED = Counter(
    "flyte_state_events_repartitioned",
    "Events forwarded to the repartition topic because their key or partition was not the execution's",
    ["topic"],
    registry=REGISTRY,
)

DEAD_LETTERS = Counter(
    "flyte_state_dead_letters",
    "Records sent to the dead-letter topic, by reason",
    ["reason"],
    registry=REGISTRY,
)

STATE_RECORDS_PUBLISHED = Counter(
    "flyte_state_state_records_published",
    "Records published to the state topics, by record kind",
    ["kind"],
    registry=REGISTRY,
)

INPUT_SEEK_BACKS = Counter(
    "flyte_state_input_seek_backs",
    "Input partitions sought back to the next offset the agent must receive, by topic and cause: "
    "jump (a fetch skipped offsets), undelivered (fetched records were not handed to the agent) "
    "or stalled-commit (a record handed over never reached the agent, so the commit stopped before it)",
    ["topic", "cause"],
    registry=REGISTRY,
)

PRODUCER_REPLACEMENTS = Counter(
    "flyte_state_producer_replacements",
    "Times the worker replaced its state and changelog producer because records got no delivery report "
    "for a while, and produced the unconfirmed records again",
    registry=REGISTRY,
)


def counter_value(counter: Counter, **labels: str) -> float:
    """Return the current value of one labelled series; 0 when it was never incremented."""
    for metric in counter.collect():
        for sample in metric.samples:
            if sample.name.endswith("_total") and sample.labels == labels:
                return sample.value
    return 0.0

EXECUTIONS_EXPIRED = Counter(
    "flyte_state_executions_expired",
    "Finished executions removed by retention, with their node, task and summary records",
    registry=REGISTRY,
)

# Gauges that topologies/worker_metrics.py updates from faust's consumer and tables.

CONSUMER_LAG = Gauge(
    "flyte_state_consumer_lag",
    "Records of an assigned input or repartition topic partition after the committed offset "
    "(high watermark minus committed offset)",
    ["topic", "partition"],
    registry=REGISTRY,
)

TABLE_KEYS = Gauge(
    "flyte_state_table_keys",
    "Keys in the partitions of a table that are active on this worker",
    ["table"],
    registry=REGISTRY,
)

RECOVERY_IN_PROGRESS = Gauge(
    "flyte_state_recovery_in_progress",
    "1 while the worker restores its tables from their changelog topics, else 0",
    registry=REGISTRY,
)

FOLD_SECONDS = Histogram(
    "flyte_state_fold_seconds",
    "Time spent in ExecutionFolder.fold for one event, by event kind",
    ["kind"],
    registry=REGISTRY,
    buckets=(0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0),
)

BATCH_EVENTS = Histogram(
    "flyte_state_batch_events",
    "Events folded in one batch, between two writes of the changed records to the tables and state topics",
    registry=REGISTRY,
    buckets=(1, 2, 5, 10, 25, 50, 100, 250, 500, 1000, 2500, 5000),
)

BATCH_WRITE_SECONDS = Histogram(
    "flyte_state_batch_write_seconds",
    "Time from the end of a batch until its table writes and state records are confirmed and its events acknowledged",
    registry=REGISTRY,
    buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0),
)


class LabelledSeries:
    """The children of one labelled metric by label values, looked up once each.

    ``labels()`` of prometheus_client validates and locks on every call, which
    costs microseconds per event on the worker's hot path.
    """

    def __init__(self, metric) -> None:
        self.metric = metric
        self.children: dict[tuple[str, ...], object] = {}

    def __call__(self, *values: str):
        child = self.children.get(values)
        if child is None:
            child = self.children[values] = self.metric.labels(*values)
        return child


class PendingCounts:
    """Increments of one labelled counter, kept in a dict until ``flush`` adds them to the counter.

    The worker counts each event here and flushes once per batch, because a
    dict update costs about a sixth of prometheus_client's locked ``inc``
    (0.1 against 0.7 us, measured with timeit). Scrapes see the counts of a
    batch once the batch is written.
    """

    def __init__(self, metric) -> None:
        self.series = LabelledSeries(metric)
        self.pending: dict[tuple[str, ...], int] = {}

    def add(self, *values: str) -> None:
        self.pending[values] = self.pending.get(values, 0) + 1

    def flush(self) -> None:
        pending, self.pending = self.pending, {}
        for values, count in pending.items():
            self.series(*values).inc(count)


TABLE_WRITES = Counter(
    "flyte_state_table_writes",
    "Records written to a table and its changelog topic; each batch writes each changed record once",
    ["table"],
    registry=REGISTRY,
)
