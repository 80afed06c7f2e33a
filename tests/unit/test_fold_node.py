"""Folding NodeExecutionEvents with processor.fold.node."""

import pytest
from flyteidl.core import catalog_pb2, execution_pb2, identifier_pb2
from flyteidl.event import event_pb2

from processor.fold.node import fold_node_event
from processor.fold.outcome import Outcome

from .builders import NodePhase, catalog_metadata, copy_of, error, execution_id, node_event, progress_fields, timestamp

Phase = NodePhase


def fold_all(*events, state=None):
    """Fold events in order and return the last transition."""
    transition = None
    for event in events:
        transition = fold_node_event(state, event)
        state = transition.state
    return transition


def state_after(*events):
    return fold_all(*events).state


def closure_of(state):
    return state.node_execution.closure


def cache_hit_metadata() -> event_pb2.TaskNodeMetadata:
    return event_pb2.TaskNodeMetadata(cache_status=catalog_pb2.CACHE_HIT, catalog_key=catalog_metadata())


@pytest.mark.parametrize(
    "phase",
    [Phase.QUEUED, Phase.RUNNING, Phase.SUCCEEDED, Phase.FAILED, Phase.SKIPPED, Phase.ABORTED, Phase.RECOVERED],
)
def test_create_by_any_phase(phase):
    transition = fold_node_event(None, node_event("n0", phase, 1))

    assert transition.outcome is Outcome.APPLIED
    assert transition.changed
    assert closure_of(transition.state).phase == phase


def test_create_sets_ids_and_times():
    state = state_after(node_event("n0", Phase.QUEUED, 1))

    assert state.node_execution.id.node_id == "n0"
    assert state.node_execution.id.execution_id == execution_id()
    assert closure_of(state).created_at == timestamp(1)
    assert closure_of(state).updated_at == timestamp(1)
    assert state.last_event_occurred_at == timestamp(1)
    assert state.producer_id == "propeller"


def test_cache_hit_single_event():
    succeeded = node_event("n0", Phase.SUCCEEDED, 4, output_uri="s3://b/o.pb", task_node_metadata=cache_hit_metadata())

    state = state_after(succeeded)

    closure = closure_of(state)
    assert closure.phase == Phase.SUCCEEDED
    assert closure.task_node_metadata.cache_status == catalog_pb2.CACHE_HIT
    assert closure.task_node_metadata.catalog_key == catalog_metadata()
    assert closure.output_uri == "s3://b/o.pb"
    assert not closure.HasField("started_at")
    assert not closure.HasField("duration")


def test_cache_status_without_catalog_key_ignored():
    metadata = event_pb2.TaskNodeMetadata(cache_status=catalog_pb2.CACHE_MISS)

    state = state_after(node_event("n0", Phase.RUNNING, 1, task_node_metadata=metadata))

    assert closure_of(state).task_node_metadata.cache_status == catalog_pb2.CACHE_DISABLED


def test_catalog_key_kept_when_absent_later():
    running = node_event("n0", Phase.RUNNING, 1, task_node_metadata=cache_hit_metadata())
    succeeded = node_event(
        "n0", Phase.SUCCEEDED, 2, task_node_metadata=event_pb2.TaskNodeMetadata(checkpoint_uri="s3://b/ckpt")
    )

    closure = closure_of(state_after(running, succeeded))

    assert closure.task_node_metadata.cache_status == catalog_pb2.CACHE_HIT
    assert closure.task_node_metadata.catalog_key == catalog_metadata()
    assert closure.task_node_metadata.checkpoint_uri == "s3://b/ckpt"


def test_catalog_key_replaced_by_newer():
    running = node_event(
        "n0",
        Phase.RUNNING,
        1,
        task_node_metadata=event_pb2.TaskNodeMetadata(
            cache_status=catalog_pb2.CACHE_MISS, catalog_key=catalog_metadata()
        ),
    )
    succeeded = node_event(
        "n0",
        Phase.SUCCEEDED,
        2,
        task_node_metadata=event_pb2.TaskNodeMetadata(
            cache_status=catalog_pb2.CACHE_POPULATED, catalog_key=catalog_metadata("artifact-2")
        ),
    )

    closure = closure_of(state_after(running, succeeded))

    assert closure.task_node_metadata.cache_status == catalog_pb2.CACHE_POPULATED
    assert closure.task_node_metadata.catalog_key.artifact_tag.artifact_id == "artifact-2"


def test_reservation_status_with_catalog_key():
    metadata = cache_hit_metadata()
    metadata.reservation_status = catalog_pb2.CatalogReservation.RESERVATION_ACQUIRED

    state = state_after(node_event("n0", Phase.RUNNING, 1, task_node_metadata=metadata))

    assert state.reservation_status == catalog_pb2.CatalogReservation.RESERVATION_ACQUIRED


def test_running_sets_started_at():
    state = state_after(node_event("n0", Phase.QUEUED, 1), node_event("n0", Phase.RUNNING, 2))

    assert closure_of(state).started_at == timestamp(2)


def test_terminal_sets_duration():
    state = state_after(
        node_event("n0", Phase.QUEUED, 1), node_event("n0", Phase.RUNNING, 2), node_event("n0", Phase.SUCCEEDED, 9)
    )

    assert closure_of(state).duration.ToSeconds() == 7


def test_terminal_without_start_has_no_duration():
    state = state_after(node_event("n0", Phase.QUEUED, 1), node_event("n0", Phase.SKIPPED, 2))

    assert not closure_of(state).HasField("duration")


def test_dynamic_running_keeps_start():
    state = state_after(
        node_event("n0", Phase.RUNNING, 2),
        node_event("n0", Phase.DYNAMIC_RUNNING, 5),
        node_event("n0", Phase.SUCCEEDED, 9),
    )

    assert closure_of(state).started_at == timestamp(2)
    assert closure_of(state).duration.ToSeconds() == 7


def test_running_again_restarts_clock():
    state = state_after(
        node_event("n0", Phase.RUNNING, 2),
        node_event("n0", Phase.DYNAMIC_RUNNING, 5),
        node_event("n0", Phase.RUNNING, 6),
    )

    assert closure_of(state).started_at == timestamp(6)


def test_result_output_uri():
    state = state_after(
        node_event("n0", Phase.RUNNING, 1), node_event("n0", Phase.SUCCEEDED, 2, output_uri="s3://b/o.pb")
    )

    assert closure_of(state).output_uri == "s3://b/o.pb"


def test_result_error():
    failed = node_event("n0", Phase.FAILED, 2, error=error("USER:Exception", execution_pb2.ExecutionError.USER))

    closure = closure_of(state_after(node_event("n0", Phase.RUNNING, 1), failed))

    assert closure.error.code == "USER:Exception"
    assert closure.error.kind == execution_pb2.ExecutionError.USER


def test_result_only_on_terminal():
    """A FAILING node records no result, because the error comes with FAILED."""
    failing = node_event("n0", Phase.FAILING, 2, error=error("USER:Early"))

    closure = closure_of(state_after(node_event("n0", Phase.RUNNING, 1), failing))

    assert not closure.HasField("error")


# Rows are (stored phase, event phase, outcome). The event is always newer than the stored one.
PHASE_MOVES = [
    (Phase.QUEUED, Phase.RUNNING, Outcome.APPLIED),
    (Phase.RUNNING, Phase.DYNAMIC_RUNNING, Outcome.APPLIED),
    (Phase.DYNAMIC_RUNNING, Phase.SUCCEEDED, Outcome.APPLIED),
    (Phase.RUNNING, Phase.FAILING, Outcome.APPLIED),
    (Phase.FAILING, Phase.FAILED, Outcome.APPLIED),
    (Phase.QUEUED, Phase.SKIPPED, Outcome.APPLIED),
    (Phase.RUNNING, Phase.TIMED_OUT, Outcome.APPLIED),
    (Phase.QUEUED, Phase.QUEUED, Outcome.DUPLICATE),
    (Phase.RUNNING, Phase.RUNNING, Outcome.DUPLICATE),
    (Phase.SUCCEEDED, Phase.RUNNING, Outcome.ALREADY_TERMINAL),
    (Phase.SUCCEEDED, Phase.FAILED, Outcome.ALREADY_TERMINAL),
    (Phase.FAILED, Phase.QUEUED, Outcome.ALREADY_TERMINAL),
    (Phase.SKIPPED, Phase.RUNNING, Outcome.ALREADY_TERMINAL),
    (Phase.ABORTED, Phase.SUCCEEDED, Outcome.ALREADY_TERMINAL),
    (Phase.RECOVERED, Phase.RUNNING, Outcome.ALREADY_TERMINAL),
]


def phase_move_id(case) -> str:
    stored, latest, outcome = case
    return f"{Phase.Phase.Name(stored)}-{Phase.Phase.Name(latest)}"


@pytest.mark.parametrize("stored, latest, outcome", PHASE_MOVES, ids=[phase_move_id(c) for c in PHASE_MOVES])
def test_phase_move(stored, latest, outcome):
    state = state_after(node_event("n0", stored, 1))

    transition = fold_node_event(state, node_event("n0", latest, 2))

    assert transition.outcome is outcome
    assert closure_of(transition.state).phase == (latest if outcome is Outcome.APPLIED else stored)


@pytest.mark.parametrize("stored, latest, outcome", PHASE_MOVES, ids=[phase_move_id(c) for c in PHASE_MOVES])
def test_phase_move_changed(stored, latest, outcome):
    """An applied event changes the published record, and a rejected one changes nothing published."""
    state = state_after(node_event("n0", stored, 1))

    transition = fold_node_event(state, node_event("n0", latest, 2))

    assert transition.changed == (outcome is Outcome.APPLIED)


@pytest.mark.parametrize("stored, latest, outcome", PHASE_MOVES, ids=[phase_move_id(c) for c in PHASE_MOVES])
def test_phase_move_keeps_input(stored, latest, outcome):
    state = state_after(node_event("n0", stored, 1))
    before = copy_of(state)

    fold_node_event(state, node_event("n0", latest, 2, input_uri="s3://b/i.pb", is_parent=True))

    assert state == before


def test_terminal_repeat_rejected():
    """A second SUCCEEDED may count as a duplicate or as arriving after the terminal phase."""
    state = state_after(node_event("n0", Phase.SUCCEEDED, 1))

    transition = fold_node_event(state, node_event("n0", Phase.SUCCEEDED, 2))

    assert transition.outcome in {Outcome.DUPLICATE, Outcome.ALREADY_TERMINAL}
    assert closure_of(transition.state) == closure_of(state)


def test_duplicate_phase_ignored():
    state = state_after(node_event("n0", Phase.RUNNING, 1))

    transition = fold_node_event(state, node_event("n0", Phase.RUNNING, 2))

    assert transition.outcome is Outcome.DUPLICATE
    assert closure_of(transition.state) == closure_of(state)


def test_replayed_event_unchanged():
    running = node_event("n0", Phase.RUNNING, 1, input_uri="s3://b/i.pb")
    state = state_after(running)

    transition = fold_node_event(state, copy_of(running))

    assert transition.outcome is Outcome.DUPLICATE
    assert not transition.changed
    assert transition.state == state


def test_older_running_fills_start():
    state = state_after(node_event("n0", Phase.QUEUED, 1), node_event("n0", Phase.SUCCEEDED, 10))

    transition = fold_node_event(state, node_event("n0", Phase.RUNNING, 3))

    closure = closure_of(transition.state)
    assert transition.outcome is Outcome.STALE
    assert transition.changed
    assert closure.phase == Phase.SUCCEEDED
    assert closure.started_at == timestamp(3)
    assert closure.duration.ToSeconds() == 7


def test_older_running_fills_start_keeps_input():
    state = state_after(node_event("n0", Phase.SUCCEEDED, 10))
    before = copy_of(state)

    fold_node_event(state, node_event("n0", Phase.RUNNING, 3))

    assert state == before


def test_older_running_keeps_start():
    state = state_after(node_event("n0", Phase.RUNNING, 4), node_event("n0", Phase.DYNAMIC_RUNNING, 8))

    transition = fold_node_event(state, node_event("n0", Phase.QUEUED, 2))

    assert transition.outcome is Outcome.STALE
    assert progress_fields(closure_of(transition.state)) == progress_fields(closure_of(state))


def test_older_event_fills_input_uri():
    state = state_after(node_event("n0", Phase.RUNNING, 4))

    transition = fold_node_event(state, node_event("n0", Phase.QUEUED, 2, input_uri="s3://b/i.pb"))

    assert transition.outcome is Outcome.STALE
    assert transition.changed
    assert transition.state.node_execution.input_uri == "s3://b/i.pb"
    assert closure_of(transition.state).phase == Phase.RUNNING


def test_same_instant_terminal_wins():
    state = state_after(node_event("n0", Phase.SUCCEEDED, 5))

    transition = fold_node_event(state, node_event("n0", Phase.RUNNING, 5))

    assert transition.outcome is Outcome.STALE
    assert closure_of(transition.state).phase == Phase.SUCCEEDED


@pytest.mark.parametrize("flag", ["is_parent", "is_dynamic", "is_array", "is_eager"])
def test_flags_stay_true(flag):
    state = state_after(
        node_event("n0", Phase.QUEUED, 1),
        node_event("n0", Phase.RUNNING, 2, **{flag: True}),
        node_event("n0", Phase.SUCCEEDED, 3),
    )

    metadata_field = "is_parent_node" if flag == "is_parent" else flag
    assert getattr(state.node_execution.metadata, metadata_field)


def test_in_dynamic_chain_stays_true():
    state = state_after(
        node_event("n0", Phase.RUNNING, 1, is_in_dynamic_chain=True), node_event("n0", Phase.SUCCEEDED, 2)
    )

    assert state.is_in_dynamic_chain


def test_input_uri_written_once():
    state = state_after(
        node_event("n0", Phase.QUEUED, 1, input_uri="s3://b/first.pb"),
        node_event("n0", Phase.RUNNING, 2, input_uri="s3://b/second.pb"),
    )

    assert state.node_execution.input_uri == "s3://b/first.pb"


def test_input_uri_from_later_event():
    state = state_after(node_event("n0", Phase.QUEUED, 1), node_event("n0", Phase.RUNNING, 2, input_uri="s3://b/i.pb"))

    assert state.node_execution.input_uri == "s3://b/i.pb"


def test_descriptive_fields_kept():
    state = state_after(
        node_event(
            "n0-0-dn1",
            Phase.QUEUED,
            1,
            parent="n0",
            retry_group="0",
            spec_node_id="dn1",
            node_name="train",
        ),
        node_event("n0-0-dn1", Phase.RUNNING, 2),
        node_event("n0-0-dn1", Phase.SUCCEEDED, 3, retry_group="1", spec_node_id="other", node_name="other"),
    )

    assert state.parent_node_id == "n0"
    assert state.node_execution.metadata.retry_group == "0"
    assert state.node_execution.metadata.spec_node_id == "dn1"
    assert state.node_name == "train"


def test_target_entity_first_kept():
    first = identifier_pb2.Identifier(resource_type=identifier_pb2.TASK, name="wf.train", version="v1")
    second = identifier_pb2.Identifier(resource_type=identifier_pb2.TASK, name="wf.train", version="v2")

    state = state_after(
        node_event("n0", Phase.QUEUED, 1, target_entity=first), node_event("n0", Phase.RUNNING, 2, target_entity=second)
    )

    assert state.target_entity == first


def test_deck_uri_recorded():
    state = state_after(
        node_event("n0", Phase.RUNNING, 1), node_event("n0", Phase.SUCCEEDED, 2, deck_uri="s3://b/deck.html")
    )

    assert closure_of(state).deck_uri == "s3://b/deck.html"


def test_subworkflow_execution_id():
    child = execution_id("child-exec")
    metadata = event_pb2.WorkflowNodeMetadata(execution_id=child)

    state = state_after(node_event("n0", Phase.RUNNING, 1, workflow_node_metadata=metadata))

    assert closure_of(state).workflow_node_metadata.executionId == child


def test_dynamic_workflow_recorded():
    workflow_id = identifier_pb2.Identifier(resource_type=identifier_pb2.WORKFLOW, name="dyn", version="v1")
    metadata = event_pb2.TaskNodeMetadata(
        dynamic_workflow=event_pb2.DynamicWorkflowNodeMetadata(id=workflow_id, dynamic_job_spec_uri="s3://b/futures.pb")
    )

    state = state_after(
        node_event("n0", Phase.RUNNING, 1),
        node_event("n0", Phase.DYNAMIC_RUNNING, 2, task_node_metadata=metadata),
        node_event("n0", Phase.SUCCEEDED, 3, task_node_metadata=event_pb2.TaskNodeMetadata()),
    )

    assert state.dynamic_workflow_id == workflow_id
    assert closure_of(state).dynamic_job_spec_uri == "s3://b/futures.pb"


def test_without_occurred_at_invalid():
    transition = fold_node_event(None, node_event("n0", Phase.RUNNING, None))

    assert transition.outcome is Outcome.INVALID
    assert transition.state is None


def test_without_occurred_at_keeps_state():
    state = state_after(node_event("n0", Phase.RUNNING, 1))

    transition = fold_node_event(state, node_event("n0", Phase.SUCCEEDED, None))

    assert transition.outcome is Outcome.INVALID
    assert not transition.changed
    assert transition.state == state


def test_unknown_phase_invalid():
    transition = fold_node_event(None, node_event("n0", 42, 1))

    assert transition.outcome is Outcome.INVALID


def test_older_fields_only_event():
    """A node event without spec_node_id, node_name or event_version folds like any other."""
    state = state_after(node_event("n0", Phase.RUNNING, 1), node_event("n0", Phase.SUCCEEDED, 3))

    assert closure_of(state).phase == Phase.SUCCEEDED
    assert state.node_execution.metadata.spec_node_id == ""


def test_older_event_keeps_cache_status():
    populated = event_pb2.TaskNodeMetadata(cache_status=catalog_pb2.CACHE_POPULATED, catalog_key=catalog_metadata())
    missed = event_pb2.TaskNodeMetadata(cache_status=catalog_pb2.CACHE_MISS, catalog_key=catalog_metadata())
    state = state_after(
        node_event("n0", Phase.QUEUED, 1), node_event("n0", Phase.SUCCEEDED, 9, task_node_metadata=populated)
    )

    transition = fold_node_event(state, node_event("n0", Phase.RUNNING, 3, task_node_metadata=missed))

    assert closure_of(transition.state).task_node_metadata.cache_status == catalog_pb2.CACHE_POPULATED
