"""Retention of finished executions: which ones to remove, and the control record that triggers a sweep.

A sweep must run inside the worker's agent, because faust writes a table
change to the changelog partition of the event being handled. So a timer
sends one control record per assigned partition to the repartition topic,
and the agent sweeps that partition when the record arrives.
"""

from __future__ import annotations

import json
from typing import Iterable, Iterator

from processor.fold.phases import WORKFLOW_TERMINAL
from processor.messages import WorkflowExecutionState

# Header that marks a control record on the repartition topic; its value names the command.
CONTROL_HEADER = "flyte-control"
RETENTION_SWEEP = b"retention-sweep"


def sweep_record(now_seconds: float) -> bytes:
    """Value of a sweep control record: the wall-clock time that retention is measured from."""
    return json.dumps({"now": now_seconds}).encode()


def parse_sweep_record(value: bytes) -> float:
    """Return the sweep's time; raises ValueError for a value that is not a sweep record."""
    document = json.loads(value)
    now = document["now"]
    if not isinstance(now, (int, float)):
        raise ValueError(f"sweep time {now!r} is not a number")
    return float(now)


def is_expired(state: WorkflowExecutionState, now_seconds: float, retention_seconds: float) -> bool:
    """Tell whether a workflow execution finished and was last updated more than ``retention_seconds`` ago."""
    closure = state.execution.closure
    if closure.phase not in WORKFLOW_TERMINAL or state.inferred:
        return False
    updated_at = closure.updated_at.seconds + closure.updated_at.nanos / 1e9
    return now_seconds - updated_at > retention_seconds


def expired_execution_keys(
    workflows: Iterable[tuple[str, WorkflowExecutionState]], now_seconds: float, retention_seconds: float
) -> Iterator[str]:
    for key, state in workflows:
        if is_expired(state, now_seconds, retention_seconds):
            yield key
