"""Folding WorkflowExecutionEvents with processor.fold.workflow."""

import pytest
from flyteidl.core import execution_pb2, literals_pb2

from processor.fold.outcome import Outcome
from processor.fold.workflow import create_inferred, fold_workflow_event

from .builders import WorkflowPhase, copy_of, error, execution_id, progress_fields, timestamp, workflow_event

Phase = WorkflowPhase


def fold_all(*events, state=None):
    """Fold events in order and return the last transition."""
    transition = None
    for event in events:
        transition = fold_workflow_event(state, event)
        state = transition.state
    return transition


def state_after(*events):
    return fold_all(*events).state


def closure_of(state):
    return state.execution.closure


@pytest.mark.parametrize(
    "phase",
    [Phase.QUEUED, Phase.RUNNING, Phase.SUCCEEDING, Phase.SUCCEEDED, Phase.FAILED, Phase.ABORTED, Phase.TIMED_OUT],
)
def test_create_by_any_phase(phase):
    transition = fold_workflow_event(None, workflow_event(phase, 1))

    assert transition.outcome is Outcome.APPLIED
    assert transition.changed
    assert transition.state.execution.closure.phase == phase


def test_create_sets_ids_and_times():
    state = state_after(workflow_event(Phase.QUEUED, 1))

    closure = state.execution.closure
    assert state.execution.id == execution_id()
    assert closure.created_at == timestamp(1)
    assert closure.updated_at == timestamp(1)
    assert state.last_event_occurred_at == timestamp(1)
    assert state.producer_id == "propeller"
    assert not state.inferred


def test_create_queued_has_no_start():
    state = state_after(workflow_event(Phase.QUEUED, 1))

    assert not state.execution.closure.HasField("started_at")


def test_running_sets_started_at():
    state = state_after(workflow_event(Phase.QUEUED, 1), workflow_event(Phase.RUNNING, 2))

    assert state.execution.closure.started_at == timestamp(2)


def test_terminal_sets_duration():
    state = state_after(
        workflow_event(Phase.QUEUED, 1), workflow_event(Phase.RUNNING, 2), workflow_event(Phase.SUCCEEDED, 12)
    )

    closure = state.execution.closure
    assert closure.duration.ToSeconds() == 10
    assert closure.updated_at == timestamp(12)
    assert closure.created_at == timestamp(1)


def test_duration_with_nanos():
    running = workflow_event(Phase.RUNNING, 2)
    running.occurred_at.nanos = 900_000_000
    succeeded = workflow_event(Phase.SUCCEEDED, 3)
    succeeded.occurred_at.nanos = 100_000_000

    state = state_after(running, succeeded)

    assert state.execution.closure.duration.ToNanoseconds() == 200_000_000


def test_terminal_without_start_has_no_duration():
    state = state_after(workflow_event(Phase.QUEUED, 1), workflow_event(Phase.SUCCEEDED, 5))

    assert not state.execution.closure.HasField("duration")
    assert not state.execution.closure.HasField("started_at")


def test_result_output_uri():
    state = state_after(
        workflow_event(Phase.RUNNING, 1), workflow_event(Phase.SUCCEEDED, 2, output_uri="s3://bucket/outputs.pb")
    )

    assert state.execution.closure.outputs.uri == "s3://bucket/outputs.pb"
    assert not state.execution.closure.HasField("error")


def test_result_error():
    failed = workflow_event(Phase.FAILED, 2, error=error("USER:Boom", execution_pb2.ExecutionError.USER))

    state = state_after(workflow_event(Phase.RUNNING, 1), failed)

    closure = state.execution.closure
    assert closure.error.code == "USER:Boom"
    assert closure.error.kind == execution_pb2.ExecutionError.USER
    assert closure.error.message == "task failed"


def test_result_system_error():
    failed = workflow_event(Phase.FAILED, 2, error=error("SYSTEM:Lost", execution_pb2.ExecutionError.SYSTEM))

    state = state_after(failed)

    assert state.execution.closure.error.kind == execution_pb2.ExecutionError.SYSTEM


def test_result_output_data():
    outputs = literals_pb2.LiteralMap()
    outputs.literals["o0"].scalar.primitive.integer = 42
    succeeded = workflow_event(Phase.SUCCEEDED, 2, output_data=outputs)

    state = state_after(workflow_event(Phase.RUNNING, 1), succeeded)

    assert state.execution.closure.output_data.literals["o0"].scalar.primitive.integer == 42


# Rows are (stored phase, event phase, outcome). The event is always newer than the stored one.
PHASE_MOVES = [
    (Phase.QUEUED, Phase.RUNNING, Outcome.APPLIED),
    (Phase.QUEUED, Phase.QUEUED, Outcome.APPLIED),
    (Phase.QUEUED, Phase.SUCCEEDED, Outcome.APPLIED),
    (Phase.RUNNING, Phase.SUCCEEDING, Outcome.APPLIED),
    (Phase.SUCCEEDING, Phase.SUCCEEDED, Outcome.APPLIED),
    (Phase.RUNNING, Phase.FAILING, Outcome.APPLIED),
    (Phase.FAILING, Phase.FAILED, Outcome.APPLIED),
    (Phase.RUNNING, Phase.ABORTING, Outcome.APPLIED),
    (Phase.RUNNING, Phase.TIMED_OUT, Outcome.APPLIED),
    (Phase.ABORTING, Phase.ABORTED, Outcome.APPLIED),
    (Phase.ABORTING, Phase.FAILED, Outcome.APPLIED),
    (Phase.RUNNING, Phase.RUNNING, Outcome.DUPLICATE),
    (Phase.ABORTING, Phase.ABORTING, Outcome.DUPLICATE),
    (Phase.RUNNING, Phase.QUEUED, Outcome.INVALID),
    (Phase.ABORTING, Phase.RUNNING, Outcome.INVALID),
    (Phase.ABORTING, Phase.QUEUED, Outcome.INVALID),
    (Phase.ABORTING, Phase.SUCCEEDING, Outcome.INVALID),
    (Phase.SUCCEEDED, Phase.RUNNING, Outcome.ALREADY_TERMINAL),
    (Phase.SUCCEEDED, Phase.FAILED, Outcome.ALREADY_TERMINAL),
    (Phase.SUCCEEDED, Phase.QUEUED, Outcome.ALREADY_TERMINAL),
    (Phase.FAILED, Phase.RUNNING, Outcome.ALREADY_TERMINAL),
    (Phase.ABORTED, Phase.SUCCEEDED, Outcome.ALREADY_TERMINAL),
    (Phase.TIMED_OUT, Phase.RUNNING, Outcome.ALREADY_TERMINAL),
]


def phase_move_id(case) -> str:
    stored, latest, outcome = case
    return f"{Phase.Phase.Name(stored)}-{Phase.Phase.Name(latest)}"


@pytest.mark.parametrize("stored, latest, outcome", PHASE_MOVES, ids=[phase_move_id(c) for c in PHASE_MOVES])
def test_phase_move(stored, latest, outcome):
    state = state_after(workflow_event(stored, 1))

    transition = fold_workflow_event(state, workflow_event(latest, 2))

    assert transition.outcome is outcome
    assert transition.state.execution.closure.phase == (latest if outcome is Outcome.APPLIED else stored)


@pytest.mark.parametrize("stored, latest, outcome", PHASE_MOVES, ids=[phase_move_id(c) for c in PHASE_MOVES])
def test_phase_move_changed(stored, latest, outcome):
    """An applied event changes the published record, and a rejected one changes nothing published."""
    state = state_after(workflow_event(stored, 1))

    transition = fold_workflow_event(state, workflow_event(latest, 2))

    assert transition.changed == (outcome is Outcome.APPLIED)


@pytest.mark.parametrize("stored, latest, outcome", PHASE_MOVES, ids=[phase_move_id(c) for c in PHASE_MOVES])
def test_phase_move_keeps_input(stored, latest, outcome):
    state = state_after(workflow_event(stored, 1))
    before = copy_of(state)

    fold_workflow_event(state, workflow_event(latest, 2))

    assert state == before


def test_terminal_repeat_rejected():
    """A second SUCCEEDED may count as a duplicate or as arriving after the terminal phase."""
    state = state_after(workflow_event(Phase.SUCCEEDED, 1))

    transition = fold_workflow_event(state, workflow_event(Phase.SUCCEEDED, 2))

    assert transition.outcome in {Outcome.DUPLICATE, Outcome.ALREADY_TERMINAL}
    assert closure_of(transition.state) == closure_of(state)


def test_replayed_event_unchanged():
    running = workflow_event(Phase.RUNNING, 1)
    state = state_after(running)

    transition = fold_workflow_event(state, copy_of(running))

    assert transition.outcome is Outcome.DUPLICATE
    assert not transition.changed
    assert transition.state == state


def test_repeated_queued_updates_time():
    state = state_after(workflow_event(Phase.QUEUED, 1), workflow_event(Phase.QUEUED, 3))

    assert state.execution.closure.updated_at == timestamp(3)
    assert state.execution.closure.created_at == timestamp(1)


def test_older_running_fills_start():
    state = state_after(workflow_event(Phase.QUEUED, 1), workflow_event(Phase.SUCCEEDED, 10))

    transition = fold_workflow_event(state, workflow_event(Phase.RUNNING, 4))

    closure = transition.state.execution.closure
    assert transition.outcome is Outcome.STALE
    assert transition.changed
    assert closure.phase == Phase.SUCCEEDED
    assert closure.started_at == timestamp(4)
    assert closure.duration.ToSeconds() == 6


def test_older_running_fills_start_keeps_input():
    state = state_after(workflow_event(Phase.SUCCEEDED, 10))
    before = copy_of(state)

    fold_workflow_event(state, workflow_event(Phase.RUNNING, 4))

    assert state == before


@pytest.mark.parametrize("phase", [Phase.QUEUED, Phase.RUNNING, Phase.SUCCEEDING, Phase.FAILING, Phase.ABORTING])
def test_older_event_stale(phase):
    state = state_after(workflow_event(Phase.RUNNING, 5), workflow_event(Phase.FAILED, 9))

    transition = fold_workflow_event(state, workflow_event(phase, 3))

    assert transition.outcome is Outcome.STALE
    assert transition.state.execution.closure.phase == Phase.FAILED


@pytest.mark.parametrize("phase", [Phase.QUEUED, Phase.SUCCEEDING, Phase.FAILING])
def test_older_event_keeps_progress(phase):
    state = state_after(workflow_event(Phase.RUNNING, 5), workflow_event(Phase.FAILED, 9))

    transition = fold_workflow_event(state, workflow_event(phase, 3))

    assert progress_fields(transition.state.execution.closure) == progress_fields(state.execution.closure)


def test_older_queued_after_running():
    state = state_after(workflow_event(Phase.RUNNING, 5))

    transition = fold_workflow_event(state, workflow_event(Phase.QUEUED, 1))

    assert transition.outcome is Outcome.STALE
    assert transition.state.execution.closure.phase == Phase.RUNNING


def test_same_instant_higher_rank_wins():
    """At equal occurred_at a RUNNING event after SUCCEEDED is older by phase rank."""
    state = state_after(workflow_event(Phase.SUCCEEDED, 5))

    transition = fold_workflow_event(state, workflow_event(Phase.RUNNING, 5))

    assert transition.outcome is Outcome.STALE
    assert transition.state.execution.closure.phase == Phase.SUCCEEDED
    assert transition.state.execution.closure.duration.ToSeconds() == 0


def test_without_occurred_at_invalid():
    transition = fold_workflow_event(None, workflow_event(Phase.RUNNING, None))

    assert transition.outcome is Outcome.INVALID
    assert not transition.changed
    assert transition.state is None


def test_without_occurred_at_keeps_state():
    state = state_after(workflow_event(Phase.QUEUED, 1))

    transition = fold_workflow_event(state, workflow_event(Phase.SUCCEEDED, None))

    assert transition.outcome is Outcome.INVALID
    assert not transition.changed
    assert transition.state == state


def test_unknown_phase_invalid():
    transition = fold_workflow_event(None, workflow_event(99, 1))

    assert transition.outcome is Outcome.INVALID
    assert not transition.changed


def test_inferred_replaced_by_first_event():
    inferred = create_inferred(execution_id(), timestamp(5))

    transition = fold_workflow_event(inferred, workflow_event(Phase.RUNNING, 3))

    closure = transition.state.execution.closure
    assert transition.outcome is Outcome.APPLIED
    assert not transition.state.inferred
    assert closure.phase == Phase.RUNNING
    assert closure.created_at == timestamp(3)
    assert closure.started_at == timestamp(3)


def test_inferred_input_unchanged():
    inferred = create_inferred(execution_id(), timestamp(5))
    before = copy_of(inferred)

    fold_workflow_event(inferred, workflow_event(Phase.RUNNING, 3))

    assert inferred == before


def test_create_inferred_fields():
    inferred = create_inferred(execution_id(), timestamp(5))

    assert inferred.inferred
    assert inferred.execution.closure.phase == Phase.UNDEFINED
    assert inferred.execution.closure.created_at == timestamp(5)


def test_inferred_then_queued_then_running():
    """The node event that created the inferred record does not order the workflow events."""
    inferred = create_inferred(execution_id(), timestamp(5))
    queued = fold_workflow_event(inferred, workflow_event(Phase.QUEUED, 1)).state

    transition = fold_workflow_event(queued, workflow_event(Phase.RUNNING, 2))

    assert transition.outcome is Outcome.APPLIED
    assert transition.state.execution.closure.phase == Phase.RUNNING


def test_other_cluster_rejected():
    state = state_after(workflow_event(Phase.QUEUED, 1, producer_id="cluster-a"))

    transition = fold_workflow_event(state, workflow_event(Phase.RUNNING, 2, producer_id="cluster-b"))

    assert transition.outcome is Outcome.INCOMPATIBLE_CLUSTER
    assert not transition.changed
    assert transition.state.execution.closure.phase == Phase.QUEUED


@pytest.mark.parametrize("producer_id", ["", "propeller"])
def test_neutral_producer_accepted(producer_id):
    state = state_after(workflow_event(Phase.QUEUED, 1, producer_id="cluster-a"))

    transition = fold_workflow_event(state, workflow_event(Phase.RUNNING, 2, producer_id=producer_id))

    assert transition.outcome is Outcome.APPLIED


def test_queued_moves_ownership():
    state = state_after(
        workflow_event(Phase.QUEUED, 1, producer_id="cluster-a"),
        workflow_event(Phase.QUEUED, 2, producer_id="cluster-b"),
        workflow_event(Phase.RUNNING, 3, producer_id="cluster-b"),
    )

    assert state.execution.closure.phase == Phase.RUNNING
    assert state.producer_id == "cluster-b"
