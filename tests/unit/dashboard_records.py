"""Builders of dashboard caches for the unit tests: folded streams and large synthetic lists."""

from __future__ import annotations

from pathlib import Path
from typing import Iterable

from flyteidl.core import execution_pb2, identifier_pb2

from processor.dashboard.cache import StateCache
from processor.events import ExecutionEvent
from processor.fold import ExecutionFolder, InMemoryStateStore
from processor.fold.execution import RecordKind
from processor.messages import ExecutionSummary, WorkflowExecutionState
from processor.streamfile import read_stream_lenient

REPO_ROOT = Path(__file__).resolve().parents[2]
EXAMPLE_STREAMS = REPO_ROOT / "examples" / "streams"

# 2026-11-03T09:00:00Z.
LIST_START_SECONDS = 1793696400

WorkflowPhase = execution_pb2.WorkflowExecution


def stream_events(name: str) -> list[ExecutionEvent]:
    return [item.event for item in read_stream_lenient(str(EXAMPLE_STREAMS / f"{name}.jsonl"))]


def cache_from_events(events: Iterable[ExecutionEvent], cache: StateCache | None = None) -> StateCache:
    """Fold the events and apply every record the worker would publish, serialized, to the cache."""
    cache = cache or StateCache()
    folder = ExecutionFolder(InMemoryStateStore())
    for event in events:
        for change in folder.fold(event).records_to_publish:
            value = change.state.SerializeToString() if change.state is not None else None
            cache.apply(change.kind, change.key, value)
    return cache


def list_execution(
    index: int,
    *,
    project: str = "flytesnacks",
    domain: str = "development",
    phase: int = WorkflowPhase.SUCCEEDED,
) -> tuple[str, WorkflowExecutionState, ExecutionSummary]:
    """Return the key, workflow record and summary of execution ``index``, created ``index`` seconds after the start."""
    execution_id = identifier_pb2.WorkflowExecutionIdentifier(project=project, domain=domain, name=f"e{index:05d}")
    key = f"{project}:{domain}:{execution_id.name}"

    workflow = WorkflowExecutionState(version=1)
    workflow.execution.id.CopyFrom(execution_id)
    closure = workflow.execution.closure
    closure.phase = phase
    closure.created_at.FromSeconds(LIST_START_SECONDS + index)
    closure.started_at.FromSeconds(LIST_START_SECONDS + index)
    closure.duration.FromSeconds(30)

    summary = ExecutionSummary(version=1, phase=phase, finished=True, node_count=2, task_count=1)
    summary.execution_id.CopyFrom(execution_id)
    summary.node_phase_counts["SUCCEEDED"] = 2
    summary.task_phase_counts["SUCCEEDED"] = 1
    return key, workflow, summary


def large_cache(count: int) -> StateCache:
    """Return a cache of ``count`` executions over three projects, two domains and three phases."""
    cache = StateCache()
    projects = ["flytesnacks", "ml-training", "etl"]
    domains = ["development", "production"]
    phases = [WorkflowPhase.SUCCEEDED, WorkflowPhase.FAILED, WorkflowPhase.RUNNING]
    for index in range(count):
        key, workflow, summary = list_execution(
            index,
            project=projects[index % len(projects)],
            domain=domains[index % len(domains)],
            phase=phases[index % len(phases)],
        )
        cache.put(RecordKind.WORKFLOW, key, workflow)
        cache.put(RecordKind.SUMMARY, key, summary)
    return cache
