"""The synthetic stream generator: determinism, shapes, timestamps, stream lines and a full fold."""

from collections import Counter, defaultdict
from datetime import datetime

import pytest
from flyteidl.core import catalog_pb2, execution_pb2

from processor import synthetic
from processor.events import EventKind
from processor.fold import ExecutionFolder, InMemoryStateStore, Outcome
from processor.fold.execution import RecordKind
from processor.fold.phases import WORKFLOW_TERMINAL
from processor.streamfile import parse_line

WorkflowPhase = execution_pb2.WorkflowExecution
NodePhase = execution_pb2.NodeExecution
TaskPhase = execution_pb2.TaskExecution


@pytest.fixture(scope="module")
def executions():
    """500 executions with default options, shared by the shape tests."""
    return synthetic.generate_executions(500, seed=20261103)


@pytest.fixture(scope="module")
def events(executions):
    return [event for execution in executions for event in execution.events]


def serialized(executions):
    return [
        (event.kind, event.entity_key, event.message.SerializeToString(deterministic=True))
        for execution in executions
        for event in execution.events
    ]


def events_of(events, kind):
    return [event.message for event in events if event.kind is kind]


def time_of(event) -> tuple[int, int]:
    return (event.message.occurred_at.seconds, event.message.occurred_at.nanos)


def test_same_seed_gives_same_events():
    first = synthetic.generate_executions(20, seed=5, cluster_moves=True)
    second = synthetic.generate_executions(20, seed=5, cluster_moves=True)

    assert serialized(first) == serialized(second)


def test_other_seed_gives_other_events():
    first = synthetic.generate_executions(20, seed=5)
    second = synthetic.generate_executions(20, seed=6)

    assert serialized(first) != serialized(second)


def test_larger_count_keeps_first_executions():
    small = synthetic.generate_executions(5, seed=9)
    large = synthetic.generate_executions(12, seed=9)

    assert serialized(large[:5]) == serialized(small)


def test_zero_count_gives_nothing():
    assert synthetic.generate_executions(0, seed=1) == []


def test_default_options_give_enough_events(executions, events):
    assert len(executions) == 500
    assert len(events) >= 20_000


def test_execution_keys_are_unique(executions):
    keys = [execution.key for execution in executions]

    assert len(set(keys)) == len(keys)


def test_events_belong_to_their_execution(executions):
    for execution in executions:
        assert {event.execution_key for event in execution.events} == {execution.key}


def test_start_sets_first_occurred_at():
    start = datetime.fromisoformat("2025-01-02T03:04:05+00:00")
    first_execution = synthetic.generate_executions(3, seed=1, start=start)[0]

    assert first_execution.events[0].message.occurred_at.ToDatetime().isoformat() == "2025-01-02T03:04:05"


@pytest.mark.parametrize(
    "options",
    [
        pytest.param({"count": -1}, id="negative-count"),
        pytest.param({"failure_rate": 1.5}, id="failure-rate-above-one"),
        pytest.param({"failure_rate": 0.7, "abort_rate": 0.4}, id="rates-sum-above-one"),
        pytest.param({"min_nodes": 0}, id="no-nodes"),
        pytest.param({"min_nodes": 5, "max_nodes": 3}, id="node-bounds-reversed"),
        pytest.param({"start": datetime(2026, 1, 1)}, id="naive-start"),
    ],
)
def test_invalid_options_raise(options):
    arguments = {"count": 1, "seed": 1, **options}

    with pytest.raises(ValueError):
        synthetic.generate_executions(**arguments)


def test_occurred_at_never_decreases_in_execution(executions):
    for execution in executions:
        times = [time_of(event) for event in execution.events]
        assert times == sorted(times), execution.key


def test_occurred_at_grows_per_entity_in_seconds(executions):
    for execution in executions:
        last_by_entity = {}
        for event in execution.events:
            seconds, nanos = time_of(event)
            assert nanos == 0
            previous = last_by_entity.get(event.entity_key)
            assert previous is None or seconds > previous, event.entity_key
            last_by_entity[event.entity_key] = seconds


def test_steps_are_one_second_with_some_ties(executions):
    steps = Counter()
    for execution in executions:
        times = [time_of(event)[0] for event in execution.events]
        steps.update(later - earlier for earlier, later in zip(times, times[1:]))

    assert set(steps) == {0, 1}
    assert steps[0] > 0.05 * steps[1]


def test_producer_is_propeller_by_default(events):
    assert {event.message.producer_id for event in events} == {synthetic.PRODUCER_ID}


def test_endings_are_mixed(executions):
    endings = Counter(execution.final_phase for execution in executions)

    assert set(endings) == {WorkflowPhase.SUCCEEDED, WorkflowPhase.FAILED, WorkflowPhase.ABORTED}
    assert endings[WorkflowPhase.SUCCEEDED] > endings[WorkflowPhase.FAILED] > endings[WorkflowPhase.ABORTED]


def test_succeeded_workflow_shape(executions):
    execution = next(item for item in executions if item.final_phase == WorkflowPhase.SUCCEEDED)
    workflow = events_of(execution.events, EventKind.WORKFLOW)
    nodes = events_of(execution.events, EventKind.NODE)

    assert [event.phase for event in workflow[:2]] == [WorkflowPhase.QUEUED, WorkflowPhase.RUNNING]
    assert workflow[-1].phase == WorkflowPhase.SUCCEEDED
    assert workflow[-1].output_uri.endswith("/end-node/data/0/outputs.pb")
    assert (nodes[0].id.node_id, nodes[0].phase) == ("start-node", NodePhase.SUCCEEDED)
    assert (nodes[-1].id.node_id, nodes[-1].phase) == ("end-node", NodePhase.SUCCEEDED)


def test_failing_workflow_shape(executions):
    failed = [item for item in executions if item.final_phase == WorkflowPhase.FAILED]
    assert failed

    for execution in failed:
        workflow = events_of(execution.events, EventKind.WORKFLOW)
        assert [event.phase for event in workflow[-2:]] == [WorkflowPhase.FAILING, WorkflowPhase.FAILED]
        assert workflow[-1].error.code == "USER:ValueError"

        node_phases = Counter(event.phase for event in events_of(execution.events, EventKind.NODE))
        assert node_phases[NodePhase.FAILED] == 1
        assert node_phases[NodePhase.ABORTED] == 1
        task_phases = Counter(event.phase for event in events_of(execution.events, EventKind.TASK))
        assert task_phases[TaskPhase.FAILED] >= 1
        assert task_phases[TaskPhase.ABORTED] == 1


def test_aborted_workflow_shape(executions):
    aborted = [item for item in executions if item.final_phase == WorkflowPhase.ABORTED]
    assert aborted

    for execution in aborted:
        workflow = events_of(execution.events, EventKind.WORKFLOW)
        assert [event.phase for event in workflow[-2:]] == [WorkflowPhase.ABORTING, WorkflowPhase.ABORTED]
        assert events_of(execution.events, EventKind.NODE)[-1].phase == NodePhase.ABORTED


def test_task_retries_use_new_attempts(events):
    attempts_by_node = defaultdict(set)
    failures = Counter()
    for event in events_of(events, EventKind.TASK):
        node = (event.parent_node_execution_id.execution_id.name, event.parent_node_execution_id.node_id)
        attempts_by_node[node].add(event.retry_attempt)
        if event.phase in (TaskPhase.RETRYABLE_FAILED, TaskPhase.FAILED) and event.HasField("error"):
            failures[event.phase] += 1

    retried = [attempts for attempts in attempts_by_node.values() if len(attempts) > 1]
    assert retried
    assert all(attempts == set(range(len(attempts))) for attempts in retried)
    assert failures[TaskPhase.RETRYABLE_FAILED] > 0
    assert failures[TaskPhase.FAILED] > 0


def test_cache_hit_is_one_succeeded_event(executions):
    hits = 0
    for execution in executions:
        node_events = defaultdict(list)
        for event in events_of(execution.events, EventKind.NODE):
            node_events[event.id.node_id].append(event)
        for node_id, node_list in node_events.items():
            metadata = node_list[-1].task_node_metadata
            if metadata.cache_status != catalog_pb2.CACHE_HIT:
                continue
            hits += 1
            assert [event.phase for event in node_list] == [NodePhase.SUCCEEDED], node_id
            assert metadata.catalog_key.dataset_id.name
            assert metadata.catalog_key.artifact_tag.artifact_id
            assert node_list[0].output_uri

    assert hits > 0


def test_cache_miss_then_populated(events):
    statuses = Counter(event.task_node_metadata.cache_status for event in events_of(events, EventKind.NODE))

    assert statuses[catalog_pb2.CACHE_MISS] > 0
    assert statuses[catalog_pb2.CACHE_POPULATED] > 0


def test_dynamic_parent_and_children(events):
    node_events = events_of(events, EventKind.NODE)
    parents = [event for event in node_events if event.phase == NodePhase.DYNAMIC_RUNNING]
    assert parents
    for parent in parents:
        assert parent.is_parent
        assert parent.is_dynamic
        assert parent.task_node_metadata.dynamic_workflow.id.name
        assert parent.task_node_metadata.dynamic_workflow.dynamic_job_spec_uri

    children = [event for event in node_events if event.HasField("parent_node_metadata")]
    parent_ids = {(event.id.execution_id.name, event.id.node_id) for event in parents}
    assert children
    for child in children:
        assert (child.id.execution_id.name, child.parent_node_metadata.node_id) in parent_ids
        assert child.retry_group == "0"
        assert child.id.node_id.startswith(f"{child.parent_node_metadata.node_id}-0-")
    assert all(child.is_in_dynamic_chain for child in children if child.phase == NodePhase.QUEUED)


def test_map_task_reports_subtasks(events):
    reports_by_task = defaultdict(list)
    for event in events_of(events, EventKind.TASK):
        if event.metadata.external_resources:
            reports_by_task[
                (event.parent_node_execution_id.execution_id.name, event.parent_node_execution_id.node_id)
            ].append(event)
    assert reports_by_task

    subtask_retried = False
    for reports in reports_by_task.values():
        running_versions = [event.phase_version for event in reports if event.phase == TaskPhase.RUNNING]
        assert running_versions == list(range(len(running_versions)))
        assert len(running_versions) >= 2
        assert reports[-1].phase == TaskPhase.SUCCEEDED
        assert all(subtask.phase == TaskPhase.SUCCEEDED for subtask in reports[-1].metadata.external_resources)
        for event in reports:
            for subtask in event.metadata.external_resources:
                assert subtask.external_id
                subtask_retried = subtask_retried or subtask.retry_attempt > 0
                if subtask.phase != TaskPhase.QUEUED:
                    assert subtask.logs

    assert subtask_retried


def test_map_node_events_are_arrays(events):
    assert any(event.is_array for event in events_of(events, EventKind.NODE))


def test_log_updates_add_logs(events):
    updates = [
        event
        for event in events_of(events, EventKind.TASK)
        if event.phase == TaskPhase.RUNNING and event.phase_version > 0 and not event.metadata.external_resources
    ]

    assert {event.phase_version for event in updates} == {1, 2}
    assert all(len(event.logs) == event.phase_version + 1 for event in updates)
    assert any(log.HideOnceFinished for event in updates for log in event.logs)


def test_pending_logs_show_while_pending(events):
    pending_logs = [
        log for event in events_of(events, EventKind.TASK) if event.phase == TaskPhase.QUEUED for log in event.logs
    ]

    assert pending_logs
    assert all(log.ShowWhilePending for log in pending_logs)


def test_reasons_carry_their_time(events):
    with_reason = [event for event in events_of(events, EventKind.TASK) if event.reason]

    assert with_reason
    for event in with_reason:
        assert [reason.reason for reason in event.reasons] == [event.reason]
        assert event.reasons[0].occurred_at == event.occurred_at


def test_input_and_output_uris(events):
    nodes = events_of(events, EventKind.NODE)
    tasks = events_of(events, EventKind.TASK)

    assert all(event.input_uri.endswith("/data/inputs.pb") for event in nodes if event.phase == NodePhase.QUEUED)
    assert all(
        event.output_uri
        for event in nodes
        if event.phase == NodePhase.SUCCEEDED and event.id.node_id not in ("start-node", "end-node")
    )
    assert all(event.output_uri for event in tasks if event.phase == TaskPhase.SUCCEEDED)
    assert all(event.HasField("error") for event in tasks if event.phase in (TaskPhase.FAILED, TaskPhase.ABORTED))


def test_launch_plan_node_links_child(events):
    linked = [event for event in events_of(events, EventKind.NODE) if event.HasField("workflow_node_metadata")]

    assert linked
    assert all(event.workflow_node_metadata.execution_id.name for event in linked)


def test_no_cluster_moves_by_default(executions):
    assert not any(execution.moved_cluster for execution in executions)


def test_cluster_moves_hand_over_after_second_queued():
    executions = synthetic.generate_executions(60, seed=4, cluster_moves=True)
    moved = [execution for execution in executions if execution.moved_cluster]
    assert 0 < len(moved) < len(executions)

    for execution in moved:
        producers = [event.message.producer_id for event in execution.events]
        first, second = (event.message for event in execution.events[:2])
        assert (first.phase, first.producer_id) == (WorkflowPhase.QUEUED, synthetic.PRODUCER_ID)
        assert (second.phase, second.producer_id) == (WorkflowPhase.QUEUED, synthetic.MOVED_PRODUCER_ID)
        assert set(producers[1:]) == {synthetic.MOVED_PRODUCER_ID}
    for execution in executions:
        if not execution.moved_cluster:
            assert {event.message.producer_id for event in execution.events} == {synthetic.PRODUCER_ID}


def test_flatten_orders_by_occurred_at():
    executions = synthetic.generate_executions(30, seed=2)
    flat = synthetic.flatten(executions)

    assert len(flat) == sum(len(execution.events) for execution in executions)
    assert [time_of(event) for event in flat] == sorted(time_of(event) for event in flat)
    for execution in executions:
        assert [event for event in flat if event.execution_key == execution.key] == execution.events


def test_flatten_interleaves_executions():
    flat = synthetic.flatten(synthetic.generate_executions(30, seed=2))
    switches = sum(1 for earlier, later in zip(flat, flat[1:]) if earlier.execution_key != later.execution_key)

    assert switches > len(flat) // 4


def test_stream_lines_round_trip():
    # Fewer executions than the module fixture: protobuf JSON takes about 0.1 ms per event each way.
    executions = synthetic.generate_executions(100, seed=3, cluster_moves=True)
    events = synthetic.flatten(executions)
    text = synthetic.to_stream_lines(events)
    lines = text.splitlines()
    assert text.endswith("\n")
    assert len(lines) == len(events)

    for line_number, (line, event) in enumerate(zip(lines, events), start=1):
        parsed = parse_line(line, "synthetic", line_number)
        assert parsed.kind is event.kind
        assert parsed.entity_key == event.entity_key
        assert parsed.execution_key == event.execution_key
        assert parsed.message == event.message


def test_stream_lines_use_shared_format(events):
    first_line = synthetic.to_stream_lines(events[:1])

    assert first_line.startswith('{"kind":"workflow","event":{"executionId":{"project":"flytesnacks"')


@pytest.mark.parametrize("cluster_moves", [False, True], ids=["one-cluster", "cluster-moves"])
def test_in_order_fold_ends_terminal(cluster_moves):
    executions = synthetic.generate_executions(150, seed=11, cluster_moves=cluster_moves)
    folder = ExecutionFolder(InMemoryStateStore())

    outcomes = Counter(folder.fold(event).outcome for event in synthetic.flatten(executions))

    assert set(outcomes) == {Outcome.APPLIED}
    workflows = folder.store.records[RecordKind.WORKFLOW]
    summaries = folder.store.records[RecordKind.SUMMARY]
    assert set(workflows) == {execution.key for execution in executions}
    for execution in executions:
        workflow = workflows[execution.key]
        assert workflow.execution.closure.phase in WORKFLOW_TERMINAL
        assert workflow.execution.closure.phase == execution.final_phase
        assert not workflow.inferred
        assert summaries[execution.key].finished
