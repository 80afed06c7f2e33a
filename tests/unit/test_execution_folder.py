"""ExecutionFolder over an InMemoryStateStore, with built events and the sample streams."""

import os
import random
from collections import Counter
from pathlib import Path

import pytest

from processor import expectations
from processor.fold import ExecutionFolder, InMemoryStateStore, Outcome
from processor.fold.execution import RecordKind
from processor.fold.phases import node_phase_name, task_phase_name
from processor.streamfile import read_stream

from .builders import (
    EXECUTION_KEY,
    NodePhase,
    TaskPhase,
    WorkflowPhase,
    copy_of,
    keyed,
    node_event,
    progress_fields,
    task_event,
    timestamp,
    workflow_event,
)

# Each sample stream NAME.jsonl has a NAME.expect.json with the facts its fold must produce.
STREAMS_DIR = Path(os.environ.get("FLYTE_STATE_STREAMS_DIR", "/work/shared/streams"))
STREAM_FILES = sorted(STREAMS_DIR.glob("*.jsonl")) if STREAMS_DIR.is_dir() else []


def stream_events(path: Path):
    return [line.event for line in read_stream(str(path))]


def fold_events(events, folder=None):
    """Fold the events and return the folder and every result."""
    folder = folder or ExecutionFolder(InMemoryStateStore())
    results = [folder.fold(event) for event in events]
    return folder, results


def require_streams():
    if not STREAM_FILES:
        pytest.skip(f"no sample streams in {STREAMS_DIR}")


@pytest.fixture(params=[path.stem for path in STREAM_FILES] or ["none"])
def stream_path(request) -> Path:
    require_streams()
    return STREAMS_DIR / f"{request.param}.jsonl"


def test_stream_meets_expectations(stream_path):
    expected = expectations.load(stream_path.with_name(stream_path.stem + ".expect.json"))
    folder, _ = fold_events(stream_events(stream_path))

    failures = expectations.check(expected, folder.store.records)

    assert failures == []


def test_stream_refold_no_changes(stream_path):
    events = stream_events(stream_path)
    folder, _ = fold_events(events)
    records_before = {kind: dict(records) for kind, records in folder.store.records.items()}

    _, results = fold_events(events, folder)

    changed = [(event.entity_key, result.outcome) for event, result in zip(events, results) if result.changes]
    assert changed == []
    assert folder.store.records == records_before


def test_stream_versions_grow_by_one(stream_path):
    _, results = fold_events(stream_events(stream_path))
    versions: dict[tuple[RecordKind, str], int] = {}

    for result in results:
        for change in result.changes:
            identity = (change.kind, change.key)
            assert change.state.version == versions.get(identity, 0) + 1, identity
            versions[identity] = change.state.version


def test_stream_summary_counts(stream_path):
    folder, _ = fold_events(stream_events(stream_path))
    records = folder.store.records

    for key, summary in records[RecordKind.SUMMARY].items():
        prefix = key + "/"
        nodes = [state for node_key, state in records[RecordKind.NODE].items() if node_key.startswith(prefix)]
        tasks = [state for task_key, state in records[RecordKind.TASK].items() if task_key.startswith(prefix)]
        node_counts = Counter(node_phase_name(state.node_execution.closure.phase) for state in nodes)
        task_counts = Counter(task_phase_name(state.task_execution.closure.phase) for state in tasks)

        assert dict(summary.node_phase_counts) == dict(node_counts), key
        assert dict(summary.task_phase_counts) == dict(task_counts), key
        assert summary.node_count == len(nodes), key
        assert summary.task_count == len(tasks), key


def test_stream_summary_phase(stream_path):
    folder, _ = fold_events(stream_events(stream_path))
    records = folder.store.records

    for key, workflow in records[RecordKind.WORKFLOW].items():
        assert records[RecordKind.SUMMARY][key].phase == workflow.execution.closure.phase, key


def test_stream_files_found():
    require_streams()

    assert all(path.with_name(path.stem + ".expect.json").is_file() for path in STREAM_FILES)


def test_workflow_event_changes():
    folder = ExecutionFolder(InMemoryStateStore())

    result = folder.fold(keyed(workflow_event(WorkflowPhase.QUEUED, 1)))

    assert result.outcome is Outcome.APPLIED
    assert [(change.kind, change.key) for change in result.changes] == [
        (RecordKind.WORKFLOW, EXECUTION_KEY),
        (RecordKind.SUMMARY, EXECUTION_KEY),
    ]


def test_replayed_event_no_changes():
    running = workflow_event(WorkflowPhase.RUNNING, 1)
    folder, _ = fold_events([keyed(running)])

    result = folder.fold(keyed(running))

    assert result.outcome is Outcome.DUPLICATE
    assert result.changes == []


def test_duplicate_phase_keeps_records():
    folder, _ = fold_events([keyed(workflow_event(WorkflowPhase.RUNNING, 1))])
    closure_before = copy_of(folder.store.get(RecordKind.WORKFLOW, EXECUTION_KEY).execution.closure)
    summary_before = copy_of(folder.store.get(RecordKind.SUMMARY, EXECUTION_KEY))

    result = folder.fold(keyed(workflow_event(WorkflowPhase.RUNNING, 2)))

    workflow = folder.store.get(RecordKind.WORKFLOW, EXECUTION_KEY)
    assert result.outcome is Outcome.DUPLICATE
    assert result.changes == []
    assert workflow.execution.closure == closure_before
    assert workflow.version == 1
    assert folder.store.get(RecordKind.SUMMARY, EXECUTION_KEY) == summary_before


def test_invalid_event_no_changes():
    folder = ExecutionFolder(InMemoryStateStore())

    result = folder.fold(keyed(node_event("n0", NodePhase.RUNNING, None)))

    assert result.outcome is Outcome.INVALID
    assert result.changes == []
    assert folder.store.records[RecordKind.WORKFLOW] == {}


def test_node_first_infers_workflow():
    folder = ExecutionFolder(InMemoryStateStore())

    result = folder.fold(keyed(node_event("n0", NodePhase.QUEUED, 3)))

    workflow = folder.store.get(RecordKind.WORKFLOW, EXECUTION_KEY)
    assert result.outcome is Outcome.APPLIED
    assert workflow.inferred
    assert workflow.execution.closure.phase == WorkflowPhase.UNDEFINED
    assert [change.kind for change in result.changes] == [
        RecordKind.WORKFLOW,
        RecordKind.SUMMARY,
        RecordKind.NODE,
        RecordKind.SUMMARY,
    ]


def test_task_first_infers_workflow():
    folder = ExecutionFolder(InMemoryStateStore())

    folder.fold(keyed(task_event("n0", TaskPhase.RUNNING, 3)))

    assert folder.store.get(RecordKind.WORKFLOW, EXECUTION_KEY).inferred


def test_workflow_event_ends_inference():
    folder, _ = fold_events([keyed(node_event("n0", NodePhase.QUEUED, 3))])

    result = folder.fold(keyed(workflow_event(WorkflowPhase.RUNNING, 2)))

    workflow = folder.store.get(RecordKind.WORKFLOW, EXECUTION_KEY)
    assert result.outcome is Outcome.APPLIED
    assert not workflow.inferred
    assert workflow.execution.closure.phase == WorkflowPhase.RUNNING
    assert workflow.execution.closure.created_at == timestamp(2)
    assert workflow.execution.closure.started_at == timestamp(2)
    assert workflow.version == 2


def test_inferred_workflow_summary():
    folder, _ = fold_events(
        [keyed(node_event("n0", NodePhase.QUEUED, 3)), keyed(workflow_event(WorkflowPhase.SUCCEEDED, 9))]
    )

    summary = folder.store.get(RecordKind.SUMMARY, EXECUTION_KEY)
    assert summary.phase == WorkflowPhase.SUCCEEDED
    assert summary.finished
    assert summary.node_count == 1


def test_node_first_then_queued_running():
    folder, _ = fold_events(
        [
            keyed(node_event("n0", NodePhase.QUEUED, 5)),
            keyed(workflow_event(WorkflowPhase.QUEUED, 1)),
            keyed(workflow_event(WorkflowPhase.RUNNING, 2)),
        ]
    )

    workflow = folder.store.get(RecordKind.WORKFLOW, EXECUTION_KEY)
    assert workflow.execution.closure.phase == WorkflowPhase.RUNNING


def test_summary_counts_move():
    folder, _ = fold_events(
        [
            keyed(workflow_event(WorkflowPhase.RUNNING, 1)),
            keyed(node_event("n0", NodePhase.QUEUED, 2)),
            keyed(node_event("n1", NodePhase.QUEUED, 2)),
            keyed(node_event("n0", NodePhase.RUNNING, 3)),
            keyed(task_event("n0", TaskPhase.RUNNING, 4)),
            keyed(task_event("n0", TaskPhase.RETRYABLE_FAILED, 5)),
            keyed(task_event("n0", TaskPhase.RUNNING, 6, retry_attempt=1)),
        ]
    )

    summary = folder.store.get(RecordKind.SUMMARY, EXECUTION_KEY)
    assert dict(summary.node_phase_counts) == {"QUEUED": 1, "RUNNING": 1}
    assert dict(summary.task_phase_counts) == {"RETRYABLE_FAILED": 1, "RUNNING": 1}
    assert summary.node_count == 2
    assert summary.task_count == 2
    assert summary.started_at == timestamp(1)
    assert summary.latest_event_occurred_at == timestamp(6)


def test_summary_unchanged_by_stale_fill():
    """An older node event that only fills input_uri changes the node but not the summary."""
    folder, _ = fold_events(
        [keyed(workflow_event(WorkflowPhase.RUNNING, 1)), keyed(node_event("n0", NodePhase.RUNNING, 5))]
    )

    result = folder.fold(keyed(node_event("n0", NodePhase.QUEUED, 2, input_uri="s3://b/i.pb")))

    assert result.outcome is Outcome.STALE
    assert [change.kind for change in result.changes] == [RecordKind.NODE]


def test_store_version_matches_change():
    folder = ExecutionFolder(InMemoryStateStore())

    result = folder.fold(keyed(node_event("n0", NodePhase.QUEUED, 1)))

    node_change = result.changes[2]
    assert node_change.state.version == 1
    assert folder.store.get(RecordKind.NODE, node_change.key).version == node_change.state.version


def test_node_other_cluster_rejected():
    folder, _ = fold_events([keyed(workflow_event(WorkflowPhase.QUEUED, 1, producer_id="cluster-a"))])

    result = folder.fold(keyed(node_event("n0", NodePhase.RUNNING, 2, producer_id="cluster-b")))

    assert result.outcome is Outcome.INCOMPATIBLE_CLUSTER
    assert result.changes == []
    assert folder.store.get(RecordKind.NODE, f"{EXECUTION_KEY}/n0") is None


def test_task_neutral_producer_accepted():
    folder, _ = fold_events([keyed(workflow_event(WorkflowPhase.QUEUED, 1, producer_id="cluster-a"))])

    result = folder.fold(keyed(task_event("n0", TaskPhase.RUNNING, 2, producer_id="propeller")))

    assert result.outcome is Outcome.APPLIED


def derived_fields(kind: RecordKind, state) -> dict:
    """Return the fields derived from a record's sorted events: progress, created_at and the result."""
    if kind is RecordKind.WORKFLOW:
        closure = state.execution.closure
        output = closure.outputs.uri
    elif kind is RecordKind.NODE:
        closure = state.node_execution.closure
        output = closure.output_uri
    else:
        closure = state.task_execution.closure
        output = closure.output_uri
    fields = progress_fields(closure)
    fields["created_at"] = closure.created_at
    fields["output"] = output
    fields["error"] = closure.error.code
    return fields


def reordered(events: list, order: str) -> list:
    if order == "reversed":
        return list(reversed(events))
    shuffled = list(events)
    random.Random(order).shuffle(shuffled)
    return shuffled


@pytest.mark.parametrize("order", ["reversed", "shuffle-1", "shuffle-2", "shuffle-3"])
def test_stream_order_independent(stream_path, order):
    """Phase, times and results depend on the set of events, not on the order they arrive in."""
    events = stream_events(stream_path)
    in_order, _ = fold_events(events)
    out_of_order, _ = fold_events(reordered(events, order))

    for kind in (RecordKind.WORKFLOW, RecordKind.NODE, RecordKind.TASK):
        expected = {key: derived_fields(kind, state) for key, state in in_order.store.records[kind].items()}
        actual = {key: derived_fields(kind, state) for key, state in out_of_order.store.records[kind].items()}
        assert actual == expected, kind


@pytest.mark.parametrize("order", ["reversed", "shuffle-1"])
def test_stream_order_summary(stream_path, order):
    events = stream_events(stream_path)
    in_order, _ = fold_events(events)
    out_of_order, _ = fold_events(reordered(events, order))

    for key, summary in in_order.store.records[RecordKind.SUMMARY].items():
        other = out_of_order.store.records[RecordKind.SUMMARY][key]
        assert dict(other.node_phase_counts) == dict(summary.node_phase_counts), key
        assert dict(other.task_phase_counts) == dict(summary.task_phase_counts), key
        assert other.phase == summary.phase, key


@pytest.mark.parametrize("field", ["ledger", "seen_fingerprints"])
def test_published_state_public(field):
    """Published states leave out the fold's bookkeeping, which stays in the store."""
    folder = ExecutionFolder(InMemoryStateStore())

    result = folder.fold(keyed(node_event("n0", NodePhase.QUEUED, 1)))

    for change in result.changes:
        if field in change.state.DESCRIPTOR.fields_by_name:
            assert len(getattr(change.state, field)) == 0, change.kind
