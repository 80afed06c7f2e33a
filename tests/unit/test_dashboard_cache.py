"""The dashboard's in-memory state cache: versions, tombstones, list order, filters and change log."""

import pytest
from google.protobuf.message import DecodeError

from processor.dashboard.cache import ExecutionFilter, StateCache, execution_key_of
from processor.fold.execution import RecordKind
from processor.messages import NodeExecutionState

from .dashboard_records import WorkflowPhase, cache_from_events, large_cache, list_execution, stream_events

HAPPY_PATH_KEY = "flytesnacks:development:aj33lzw16h8hf3qdnvot"


@pytest.fixture(scope="module")
def shared_cache() -> StateCache:
    """A cache of 300 executions for the tests that only read it."""
    return large_cache(300)


@pytest.mark.parametrize(
    "kind, key, expected",
    [
        (RecordKind.WORKFLOW, "p:d:n", "p:d:n"),
        (RecordKind.SUMMARY, "org/p:d:n", "org/p:d:n"),
        (RecordKind.NODE, "p:d:n/n0", "p:d:n"),
        (RecordKind.NODE, "org/p:d:n/n0-0-dn1", "org/p:d:n"),
        (RecordKind.TASK, "p:d:n/n0/wf.train/2", "p:d:n"),
        (RecordKind.TASK, "org/p:d:n/n0/wf.train/0", "org/p:d:n"),
    ],
)
def test_execution_key_of(kind, key, expected):
    assert execution_key_of(kind, key) == expected


def test_stream_fills_cache():
    cache = cache_from_events(stream_events("happy-path"))

    snapshot = cache.execution(HAPPY_PATH_KEY)

    assert snapshot is not None
    assert snapshot.workflow.execution.closure.phase == WorkflowPhase.SUCCEEDED
    assert snapshot.summary.node_count == len(snapshot.nodes)
    assert snapshot.summary.task_count == len(snapshot.tasks)
    assert cache.status().executions == 1


def test_lower_version_ignored():
    cache = StateCache()
    key, workflow, _ = list_execution(1)
    newer = type(workflow)()
    newer.CopyFrom(workflow)
    newer.version = 2

    assert cache.put(RecordKind.WORKFLOW, key, newer) is True
    assert cache.put(RecordKind.WORKFLOW, key, workflow) is False
    assert cache.execution(key).workflow.version == 2


def test_equal_version_replaces():
    cache = StateCache()
    key, workflow, _ = list_execution(1)
    cache.put(RecordKind.WORKFLOW, key, workflow)
    republished = type(workflow)()
    republished.CopyFrom(workflow)
    republished.execution.closure.phase = WorkflowPhase.FAILED

    assert cache.put(RecordKind.WORKFLOW, key, republished) is True
    assert cache.execution(key).workflow.execution.closure.phase == WorkflowPhase.FAILED


def test_tombstone_removes_record():
    cache = cache_from_events(stream_events("happy-path"))
    node_key = next(iter(cache.execution(HAPPY_PATH_KEY).nodes))

    assert cache.apply(RecordKind.NODE, node_key, None) is True
    assert node_key not in cache.execution(HAPPY_PATH_KEY).nodes
    assert cache.apply(RecordKind.NODE, node_key, None) is False


def test_tombstones_remove_execution():
    cache = cache_from_events(stream_events("happy-path"))
    snapshot = cache.execution(HAPPY_PATH_KEY)
    records_before = cache.status().records

    for key in snapshot.tasks:
        cache.apply(RecordKind.TASK, key, None)
    for key in snapshot.nodes:
        cache.apply(RecordKind.NODE, key, None)
    cache.apply(RecordKind.SUMMARY, HAPPY_PATH_KEY, None)
    cache.apply(RecordKind.WORKFLOW, HAPPY_PATH_KEY, None)

    assert cache.execution(HAPPY_PATH_KEY) is None
    assert cache.list_executions(ExecutionFilter(), limit=10, offset=0).total == 0
    assert cache.status().executions == 0
    assert cache.status().records == 0
    assert records_before == 2 + len(snapshot.nodes) + len(snapshot.tasks)


def test_nodes_alone_not_listed():
    cache = StateCache()
    cache.put(RecordKind.NODE, "p:d:n/n0", NodeExecutionState(version=1))

    assert cache.execution("p:d:n") is None
    assert cache.list_executions(ExecutionFilter(), limit=10, offset=0).total == 0
    assert cache.status().records == 1


def test_undecodable_value_raises():
    with pytest.raises(DecodeError):
        StateCache().apply(RecordKind.WORKFLOW, "p:d:n", b"\xff\xff\xff")


def test_list_newest_first():
    cache = large_cache(50)

    rows = cache.list_executions(ExecutionFilter(), limit=50, offset=0).rows

    assert [row.name for row in rows] == [f"e{index:05d}" for index in reversed(range(50))]


def test_list_pages_cover_all():
    cache = large_cache(250)

    pages = [cache.list_executions(ExecutionFilter(), limit=100, offset=offset) for offset in (0, 100, 200)]
    keys = [row.key for page in pages for row in page.rows]

    assert [len(page.rows) for page in pages] == [100, 100, 50]
    assert all(page.total == 250 for page in pages)
    assert len(set(keys)) == 250


@pytest.mark.parametrize(
    "conditions, expected_total",
    [
        (ExecutionFilter(project="etl"), 100),
        (ExecutionFilter(domain="production"), 150),
        (ExecutionFilter(phases=frozenset({"FAILED"})), 100),
        (ExecutionFilter(phases=frozenset({"FAILED", "RUNNING"})), 200),
        (ExecutionFilter(project="etl", domain="production"), 50),
        (ExecutionFilter(query="E00012"), 1),
        (ExecutionFilter(query="e0001"), 10),
        (ExecutionFilter(project="nobody"), 0),
    ],
)
def test_list_filters(shared_cache, conditions, expected_total):
    page = shared_cache.list_executions(conditions, limit=1000, offset=0)

    assert page.total == expected_total
    assert all(conditions.matches(row) for row in page.rows)


def test_facets_count_values(shared_cache):
    facets = shared_cache.facets()

    assert facets["project"] == {"etl": 100, "flytesnacks": 100, "ml-training": 100}
    assert facets["domain"] == {"development": 150, "production": 150}
    assert facets["phase"] == {"FAILED": 100, "RUNNING": 100, "SUCCEEDED": 100}


def test_row_fields():
    cache = cache_from_events(stream_events("happy-path"))

    row = cache.list_executions(ExecutionFilter(), limit=1, offset=0).rows[0].to_json()

    assert row["key"] == HAPPY_PATH_KEY
    assert (row["project"], row["domain"], row["name"]) == ("flytesnacks", "development", "aj33lzw16h8hf3qdnvot")
    assert row["phase"] == "SUCCEEDED"
    assert row["finished"] is True
    assert row["inferred"] is False
    assert row["started_at"] == "2026-11-03T10:12:17Z"
    assert row["duration_seconds"] == pytest.approx(79.2)
    assert row["node_phase_counts"] == {"SUCCEEDED": 4}
    assert row["task_phase_counts"] == {"SUCCEEDED": 2}
    assert "sort_nanos" not in row


def test_changes_since_lists_keys():
    cache = large_cache(3)
    start = cache.sequence
    first_key, workflow, _ = list_execution(0)
    second_key, other, _ = list_execution(1)
    cache.put(RecordKind.WORKFLOW, second_key, other)
    cache.put(RecordKind.WORKFLOW, first_key, workflow)

    changes = cache.changes_since(start)

    assert changes.sequence == start + 2
    assert changes.execution_keys == [second_key, first_key]
    assert changes.reset is False
    assert cache.changes_since(changes.sequence).execution_keys == []


def test_changes_since_forgotten_resets():
    cache = StateCache(change_log_size=5)
    for index in range(10):
        key, workflow, _ = list_execution(index)
        cache.put(RecordKind.WORKFLOW, key, workflow)

    assert cache.changes_since(1).reset is True
    assert cache.changes_since(5).reset is False
    assert len(cache.changes_since(5).execution_keys) == 5


def test_changes_since_future_resets():
    cache = large_cache(2)

    assert cache.changes_since(cache.sequence + 10).reset is True


def test_status_ready_and_error():
    cache = StateCache()

    assert cache.status().ready is False
    cache.mark_ready()
    cache.set_error("broker down")

    assert cache.status().ready is True
    assert cache.status().error == "broker down"
