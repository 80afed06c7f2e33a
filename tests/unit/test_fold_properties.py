"""Properties of ExecutionFolder over synthetic executions delivered in perturbed orders.

Each example generates 1-4 executions with processor.synthetic and folds
them twice into fresh InMemoryStateStores: once in emission order (the
reference) and once in an order drawn from hypothesis' own random, so that a
failure shrinks and replays. Executions with cluster moves are left out where
order independence is promised: a move of ownership that arrives late does
not re-judge node and task events already folded. A node or task event
rejected as incompatible-cluster is judged again only when it arrives again
(docs/semantics.md, Limits), which the cluster-move tests check.
"""

from __future__ import annotations

import random
from collections import defaultdict
from unittest import mock

from flyteidl.core import execution_pb2, identifier_pb2
from flyteidl.event import event_pb2
from google.protobuf import timestamp_pb2
from google.protobuf.message import Message
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from processor import synthetic
from processor.events import EventKind, ExecutionEvent, keyed_event
from processor.fold import ExecutionFolder, InMemoryStateStore, Outcome, ledger
from processor.fold.execution import RecordKind
from processor.fold.public import public_view

WorkflowPhase = execution_pb2.WorkflowExecution
NodePhase = execution_pb2.NodeExecution
TaskPhase = execution_pb2.TaskExecution

# Measured on a 2-core machine: 10-50 ms per example, about 30 s for the file.
PROPERTY_SETTINGS = settings(
    max_examples=200,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow],
)

SEEDS = st.integers(min_value=0, max_value=2**32 - 1)
COUNTS = st.integers(min_value=1, max_value=4)
RANDOMS = st.randoms(use_true_random=False)

Records = dict[tuple[RecordKind, str], Message]


def generate(count: int, seed: int, *, cluster_moves: bool = False) -> list[ExecutionEvent]:
    return synthetic.flatten(synthetic.generate_executions(count, seed, cluster_moves=cluster_moves))


def fold_all(events: list[ExecutionEvent]) -> tuple[ExecutionFolder, list]:
    folder = ExecutionFolder(InMemoryStateStore())
    results = [folder.fold(event) for event in events]
    return folder, results


def public_records(folder: ExecutionFolder) -> Records:
    """Return the public view, version cleared, of every record of every kind."""
    return {
        (kind, key): public_view(state)
        for kind, records in folder.store.records.items()
        for key, state in records.items()
    }


def entity_order_shuffle(events: list[ExecutionEvent], rng: random.Random) -> list[ExecutionEvent]:
    """Interleave the entities' event lists at random, keeping each entity's own order.

    The next event comes from an entity picked with weight equal to its
    remaining events, so every interleaving is possible.
    """
    queues: dict[str, list[ExecutionEvent]] = defaultdict(list)
    for event in events:
        queues[event.entity_key].append(event)
    pending = [list(reversed(queue)) for queue in queues.values()]

    delivery = []
    remaining = len(events)
    while remaining:
        pick = rng.randrange(remaining)
        for queue in pending:
            if pick < len(queue):
                delivery.append(queue.pop())
                break
            pick -= len(queue)
        remaining -= 1
    return delivery


def redelivered(event: ExecutionEvent) -> ExecutionEvent:
    """Return a separately decoded copy of the event, as a resend would arrive."""
    message = type(event.message)()
    message.ParseFromString(event.message.SerializeToString())
    return keyed_event(event.kind, message)


def with_duplicates(delivery: list[ExecutionEvent], rng: random.Random) -> list[ExecutionEvent]:
    """Insert copies of random events at random places after their originals."""
    result = list(delivery)
    for _ in range(rng.randint(0, max(1, len(delivery) // 4))):
        original = rng.randrange(len(result))
        position = rng.randint(original + 1, len(result))
        result.insert(position, redelivered(result[original]))
    return result


def with_replayed_suffix(delivery: list[ExecutionEvent], rng: random.Random) -> list[ExecutionEvent]:
    """Append a copy of the last k events, as a consumer that restarts from an older offset reads them."""
    replayed = rng.randint(0, len(delivery))
    return delivery + [redelivered(event) for event in delivery[len(delivery) - replayed :]]


def closure_of(kind: RecordKind, state: Message):
    if kind is RecordKind.WORKFLOW:
        return state.execution.closure
    if kind is RecordKind.NODE:
        return state.node_execution.closure
    return state.task_execution.closure


def result_of(closure) -> tuple:
    """Return the closure's output_result oneof as (field name, content), the content being a URI or serialized bytes."""
    field = closure.WhichOneof("output_result")
    if field is None:
        return (None, None)
    if field == "output_uri":
        return (field, closure.output_uri)
    return (field, getattr(closure, field).SerializeToString(deterministic=True))


def progress_facts(kind: RecordKind, state: Message) -> dict:
    """Return the order-independent facts of a record: phase, started_at, duration, result and subtask phases."""
    closure = closure_of(kind, state)
    facts = {
        "phase": closure.phase,
        "started_at": closure.started_at.ToJsonString() if closure.HasField("started_at") else None,
        "duration": closure.duration.ToJsonString() if closure.HasField("duration") else None,
        "result": result_of(closure),
    }
    if kind is RecordKind.TASK:
        facts["subtask_phases"] = {
            (subtask.index, subtask.retry_attempt): TaskPhase.Phase.Name(subtask.phase)
            for subtask in closure.metadata.external_resources
        }
    return facts


def entity_facts(folder: ExecutionFolder) -> dict:
    return {
        (kind, key): progress_facts(kind, state)
        for kind in (RecordKind.WORKFLOW, RecordKind.NODE, RecordKind.TASK)
        for key, state in folder.store.records[kind].items()
    }


def describe_difference(expected: Records, actual: Records) -> str:
    """Name the first records whose public views differ, for the assertion message."""
    missing = sorted(str(key) for key in expected.keys() - actual.keys())
    extra = sorted(str(key) for key in actual.keys() - expected.keys())
    differing = [key for key in expected.keys() & actual.keys() if expected[key] != actual[key]]
    lines = [f"missing records: {missing[:3]}", f"extra records: {extra[:3]}"]
    for key in sorted(differing, key=str)[:2]:
        lines.append(f"{key} in order:\n{expected[key]}\nperturbed:\n{actual[key]}")
    return "\n".join(lines)


@PROPERTY_SETTINGS
@given(seed=SEEDS, count=COUNTS, rng=RANDOMS)
def test_entity_ordered_delivery_keeps_state(seed, count, rng):
    events = generate(count, seed)
    reference, _ = fold_all(events)
    delivery = with_replayed_suffix(with_duplicates(entity_order_shuffle(events, rng), rng), rng)

    perturbed, _ = fold_all(delivery)

    expected = public_records(reference)
    actual = public_records(perturbed)
    assert actual == expected, describe_difference(expected, actual)


@PROPERTY_SETTINGS
@given(seed=SEEDS, count=COUNTS, rng=RANDOMS)
def test_any_shuffle_gives_in_order_progress(seed, count, rng):
    events = generate(count, seed)
    reference, _ = fold_all(events)
    delivery = list(events)
    rng.shuffle(delivery)

    shuffled, _ = fold_all(delivery)

    expected = entity_facts(reference)
    actual = entity_facts(shuffled)
    assert actual.keys() == expected.keys()
    for key, facts in expected.items():
        assert actual[key] == facts, key


@PROPERTY_SETTINGS
@given(seed=SEEDS, count=COUNTS, rng=RANDOMS)
def test_second_fold_of_every_event_changes_nothing(seed, count, rng):
    events = generate(count, seed)
    first_pass = list(events)
    rng.shuffle(first_pass)
    folder, _ = fold_all(first_pass)
    before = public_records(folder)

    second_pass = [redelivered(event) for event in events]
    rng.shuffle(second_pass)
    changed = []
    for event in second_pass:
        result = folder.fold(event)
        if result.changes:
            changed.append((event.entity_key, result.outcome.value))

    assert changed == []
    assert public_records(folder) == before


_WITH_ENTRY = ledger.with_entry


def rewrite_always(stored, entry, rank):
    """Return what ledger.with_entry returns, but never flag the new entry as last, so folds rewrite records."""
    entries, _ = _WITH_ENTRY(stored, entry, rank)
    return entries, False


def stored_records(folder: ExecutionFolder) -> dict[tuple[RecordKind, str], bytes]:
    """Return every record, bookkeeping included, serialized deterministically."""
    return {
        (kind, key): state.SerializeToString(deterministic=True)
        for kind, records in folder.store.records.items()
        for key, state in records.items()
    }


@PROPERTY_SETTINGS
@given(seed=SEEDS, count=COUNTS, rng=RANDOMS)
def test_update_for_a_last_entry_equals_a_rewrite(seed, count, rng):
    """A fold whose event sorts last updates the record; the result must be what a full rewrite gives."""
    events = generate(count, seed, cluster_moves=True)
    delivery = with_duplicates(entity_order_shuffle(events, rng), rng)

    updated, updated_results = fold_all(delivery)
    with mock.patch.object(ledger, "with_entry", rewrite_always):
        rewritten, rewritten_results = fold_all(delivery)

    assert [result.outcome for result in updated_results] == [result.outcome for result in rewritten_results]
    assert stored_records(updated) == stored_records(rewritten)


def cluster_move_events() -> tuple[ExecutionEvent, ExecutionEvent, ExecutionEvent]:
    """Return QUEUED from propeller at t1, QUEUED from cluster-b at t2 and a cluster-b node event at t3."""
    execution_id = identifier_pb2.WorkflowExecutionIdentifier(project="flytesnacks", domain="development", name="e1")

    def at(seconds: int) -> timestamp_pb2.Timestamp:
        return timestamp_pb2.Timestamp(seconds=1_793_700_000 + seconds)

    queued = event_pb2.WorkflowExecutionEvent(
        execution_id=execution_id, producer_id=synthetic.PRODUCER_ID, phase=WorkflowPhase.QUEUED, occurred_at=at(1)
    )
    moved = event_pb2.WorkflowExecutionEvent(
        execution_id=execution_id,
        producer_id=synthetic.MOVED_PRODUCER_ID,
        phase=WorkflowPhase.QUEUED,
        occurred_at=at(2),
    )
    node = event_pb2.NodeExecutionEvent(
        id=identifier_pb2.NodeExecutionIdentifier(node_id="n0", execution_id=execution_id),
        producer_id=synthetic.MOVED_PRODUCER_ID,
        phase=NodePhase.QUEUED,
        occurred_at=at(3),
    )
    return (
        keyed_event(EventKind.WORKFLOW, queued),
        keyed_event(EventKind.WORKFLOW, moved),
        keyed_event(EventKind.NODE, node),
    )


@PROPERTY_SETTINGS
@given(seed=SEEDS, count=COUNTS, rng=RANDOMS)
def test_redelivery_judges_cluster_rejections_again(seed, count, rng):
    """A second delivery changes records only through events rejected as incompatible-cluster the first time.

    All workflow events are known after the first pass, and the generated
    executions send no event from the old owner after a move, so the second
    pass accepts every node and task event and reaches the in-order progress.
    A third pass then finds nothing to change.
    """
    events = generate(count, seed, cluster_moves=True)
    reference, _ = fold_all(events)
    first_order = list(range(len(events)))
    rng.shuffle(first_order)
    folder = ExecutionFolder(InMemoryStateStore())
    first_outcomes = {index: folder.fold(events[index]).outcome for index in first_order}

    second_order = list(range(len(events)))
    rng.shuffle(second_order)
    changed_by = [index for index in second_order if folder.fold(redelivered(events[index])).changes]

    assert [first_outcomes[index] for index in changed_by] == [Outcome.INCOMPATIBLE_CLUSTER] * len(changed_by)
    assert entity_facts(folder) == entity_facts(reference)

    before = public_records(folder)
    third_pass = [redelivered(event) for event in events]
    rng.shuffle(third_pass)
    changed = [event.entity_key for event in third_pass if folder.fold(event).changes]

    assert changed == []
    assert public_records(folder) == before


def test_cluster_move_rejects_node_before_move():
    """Pin the first delivery of the minimal input: the node event is rejected once."""
    queued, moved, node = cluster_move_events()
    folder = ExecutionFolder(InMemoryStateStore())

    outcomes = [folder.fold(event).outcome for event in (queued, node, moved)]

    assert outcomes == [Outcome.APPLIED, Outcome.INCOMPATIBLE_CLUSTER, Outcome.APPLIED]


def test_cluster_move_redelivery_judged_again():
    """A resent copy of the rejected node event is judged against the ownership known now, which includes the move."""
    queued, moved, node = cluster_move_events()
    folder = ExecutionFolder(InMemoryStateStore())
    for event in (queued, node, moved):
        folder.fold(event)

    result = folder.fold(redelivered(node))

    assert result.outcome is Outcome.APPLIED
    assert (RecordKind.NODE, node.entity_key) in [(change.kind, change.key) for change in result.changes]
    assert folder.store.get(RecordKind.NODE, node.entity_key).node_execution.closure.phase == NodePhase.QUEUED


def test_cluster_move_second_redelivery_duplicate():
    queued, moved, node = cluster_move_events()
    folder = ExecutionFolder(InMemoryStateStore())
    for event in (queued, node, moved, redelivered(node)):
        folder.fold(event)

    result = folder.fold(redelivered(node))

    assert result.outcome is Outcome.DUPLICATE
    assert result.changes == []
