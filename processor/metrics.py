"""Counters of the worker, as Prometheus metrics of the standard client library."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter

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
