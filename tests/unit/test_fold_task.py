"""Folding TaskExecutionEvents with processor.fold.task."""

import itertools

import pytest
from flyteidl.core import catalog_pb2, execution_pb2
from flyteidl.event import event_pb2
from google.protobuf import json_format, struct_pb2
from hypothesis import given, settings
from hypothesis import strategies as st

from processor.fold import ledger
from processor.fold.outcome import Outcome
from processor.fold.public import public_view
from processor.fold.task import fold_task_event

from .builders import (
    TASK_NAME,
    TaskPhase,
    copy_of,
    error,
    node_execution_id,
    progress_fields,
    task_event,
    task_log,
    timestamp,
)

Phase = TaskPhase


def fold_all(*events, state=None):
    """Fold events in order and return the last transition."""
    transition = None
    for event in events:
        transition = fold_task_event(state, event)
        state = transition.state
    return transition


def state_after(*events):
    return fold_all(*events).state


def closure_of(state):
    return state.task_execution.closure


def struct(value: dict) -> struct_pb2.Struct:
    message = struct_pb2.Struct()
    message.update(value)
    return message


def reason(text: str, at=None) -> event_pb2.EventReason:
    entry = event_pb2.EventReason(reason=text)
    if at is not None:
        entry.occurred_at.CopyFrom(timestamp(at))
    return entry


@pytest.mark.parametrize(
    "phase",
    [Phase.QUEUED, Phase.WAITING_FOR_RESOURCES, Phase.INITIALIZING, Phase.RUNNING, Phase.SUCCEEDED, Phase.FAILED],
)
def test_create_by_any_phase(phase):
    transition = fold_task_event(None, task_event("n0", phase, 1))

    assert transition.outcome is Outcome.APPLIED
    assert transition.changed
    assert closure_of(transition.state).phase == phase


def test_create_sets_ids_and_times():
    state = state_after(task_event("n0", Phase.QUEUED, 1, retry_attempt=2, phase_version=1, task_type="python-task"))

    task_id = state.task_execution.id
    assert task_id.task_id.name == TASK_NAME
    assert task_id.node_execution_id == node_execution_id("n0")
    assert task_id.retry_attempt == 2
    assert state.phase_version == 1
    assert closure_of(state).created_at == timestamp(1)
    assert closure_of(state).updated_at == timestamp(1)
    assert closure_of(state).task_type == "python-task"
    assert state.producer_id == "propeller"


def test_running_sets_started_at():
    state = state_after(task_event("n0", Phase.QUEUED, 1), task_event("n0", Phase.RUNNING, 2))

    assert closure_of(state).started_at == timestamp(2)


def test_running_update_keeps_start():
    state = state_after(task_event("n0", Phase.RUNNING, 2), task_event("n0", Phase.RUNNING, 5, phase_version=1))

    assert closure_of(state).started_at == timestamp(2)
    assert closure_of(state).updated_at == timestamp(5)


def test_terminal_sets_duration():
    state = state_after(
        task_event("n0", Phase.QUEUED, 1), task_event("n0", Phase.RUNNING, 3), task_event("n0", Phase.SUCCEEDED, 11)
    )

    assert closure_of(state).duration.ToSeconds() == 8


def test_terminal_without_start_has_no_duration():
    state = state_after(task_event("n0", Phase.QUEUED, 1), task_event("n0", Phase.ABORTED, 2))

    assert not closure_of(state).HasField("duration")


def test_result_output_uri():
    state = state_after(
        task_event("n0", Phase.RUNNING, 1), task_event("n0", Phase.SUCCEEDED, 2, output_uri="s3://b/o.pb")
    )

    assert closure_of(state).output_uri == "s3://b/o.pb"


def test_result_error():
    failed = task_event("n0", Phase.FAILED, 2, error=error("USER:ValueError", execution_pb2.ExecutionError.USER))

    closure = closure_of(state_after(task_event("n0", Phase.RUNNING, 1), failed))

    assert closure.error.code == "USER:ValueError"
    assert closure.error.kind == execution_pb2.ExecutionError.USER


def test_retryable_failure_error():
    failed = task_event("n0", Phase.RETRYABLE_FAILED, 2, error=error("USER:Flaky"))

    closure = closure_of(state_after(task_event("n0", Phase.RUNNING, 1), failed))

    assert closure.phase == Phase.RETRYABLE_FAILED
    assert closure.error.code == "USER:Flaky"


# Rows are (stored phase, event phase, outcome) at phase_version 0. The event is always newer.
PHASE_MOVES = [
    (Phase.QUEUED, Phase.WAITING_FOR_RESOURCES, Outcome.APPLIED),
    (Phase.QUEUED, Phase.INITIALIZING, Outcome.APPLIED),
    (Phase.INITIALIZING, Phase.RUNNING, Outcome.APPLIED),
    (Phase.RUNNING, Phase.RETRYABLE_FAILED, Outcome.APPLIED),
    (Phase.RUNNING, Phase.SUCCEEDED, Outcome.APPLIED),
    (Phase.RUNNING, Phase.FAILED, Outcome.APPLIED),
    (Phase.RUNNING, Phase.ABORTED, Outcome.APPLIED),
    (Phase.QUEUED, Phase.QUEUED, Outcome.DUPLICATE),
    (Phase.RUNNING, Phase.RUNNING, Outcome.DUPLICATE),
    (Phase.SUCCEEDED, Phase.RUNNING, Outcome.ALREADY_TERMINAL),
    (Phase.FAILED, Phase.SUCCEEDED, Outcome.ALREADY_TERMINAL),
    (Phase.ABORTED, Phase.QUEUED, Outcome.ALREADY_TERMINAL),
]


def phase_move_id(case) -> str:
    stored, latest, outcome = case
    return f"{Phase.Phase.Name(stored)}-{Phase.Phase.Name(latest)}"


@pytest.mark.parametrize("stored, latest, outcome", PHASE_MOVES, ids=[phase_move_id(c) for c in PHASE_MOVES])
def test_phase_move(stored, latest, outcome):
    state = state_after(task_event("n0", stored, 1))

    transition = fold_task_event(state, task_event("n0", latest, 2))

    assert transition.outcome is outcome
    assert closure_of(transition.state).phase == (latest if outcome is Outcome.APPLIED else stored)


@pytest.mark.parametrize("stored, latest, outcome", PHASE_MOVES, ids=[phase_move_id(c) for c in PHASE_MOVES])
def test_phase_move_changed(stored, latest, outcome):
    """An applied event changes the published record, and a rejected one changes nothing published."""
    state = state_after(task_event("n0", stored, 1))

    transition = fold_task_event(state, task_event("n0", latest, 2))

    assert transition.changed == (outcome is Outcome.APPLIED)


@pytest.mark.parametrize("stored, latest, outcome", PHASE_MOVES, ids=[phase_move_id(c) for c in PHASE_MOVES])
def test_phase_move_keeps_input(stored, latest, outcome):
    state = state_after(task_event("n0", stored, 1, logs=[task_log("a", show_while_pending=True)]))
    before = copy_of(state)

    fold_task_event(state, task_event("n0", latest, 2, logs=[task_log("b")], custom_info=struct({"x": 1})))

    assert state == before


def test_terminal_higher_version_rejected():
    state = state_after(task_event("n0", Phase.SUCCEEDED, 1))

    transition = fold_task_event(state, task_event("n0", Phase.SUCCEEDED, 2, phase_version=1))

    assert transition.outcome is Outcome.ALREADY_TERMINAL
    assert closure_of(transition.state) == closure_of(state)


@pytest.mark.parametrize(
    "stored_version, event_version, outcome",
    [
        (0, 0, Outcome.DUPLICATE),
        (2, 1, Outcome.DUPLICATE),
        (2, 2, Outcome.DUPLICATE),
        (2, 3, Outcome.APPLIED),
        (0, 5, Outcome.APPLIED),
    ],
)
def test_phase_version_same_phase(stored_version, event_version, outcome):
    state = state_after(task_event("n0", Phase.RUNNING, 1, phase_version=stored_version))

    transition = fold_task_event(state, task_event("n0", Phase.RUNNING, 2, phase_version=event_version))

    assert transition.outcome is outcome
    assert transition.state.phase_version == (event_version if outcome is Outcome.APPLIED else stored_version)


def test_phase_version_duplicate_ignored():
    state = state_after(task_event("n0", Phase.RUNNING, 1, phase_version=2))

    transition = fold_task_event(state, task_event("n0", Phase.RUNNING, 5, phase_version=1, logs=[task_log("late")]))

    assert closure_of(transition.state) == closure_of(state)
    assert transition.state.phase_version == 2


def test_terminal_repeat_rejected():
    """A second SUCCEEDED may count as a duplicate or as arriving after the terminal phase."""
    state = state_after(task_event("n0", Phase.SUCCEEDED, 1))

    transition = fold_task_event(state, task_event("n0", Phase.SUCCEEDED, 2))

    assert transition.outcome in {Outcome.DUPLICATE, Outcome.ALREADY_TERMINAL}
    assert closure_of(transition.state) == closure_of(state)


def test_replayed_event_unchanged():
    running = task_event("n0", Phase.RUNNING, 1, logs=[task_log("stdout")], reason="running")
    state = state_after(running)

    transition = fold_task_event(state, copy_of(running))

    assert transition.outcome is Outcome.DUPLICATE
    assert not transition.changed
    assert transition.state == state


@pytest.mark.parametrize("stored_version, event_version", [(3, 0), (0, 2), (4, 4)])
def test_phase_change_takes_version(stored_version, event_version):
    state = state_after(task_event("n0", Phase.RUNNING, 1, phase_version=stored_version))

    transition = fold_task_event(state, task_event("n0", Phase.RETRYABLE_FAILED, 2, phase_version=event_version))

    assert transition.outcome is Outcome.APPLIED
    assert transition.state.phase_version == event_version


def test_version_update_after_phase_change():
    """RUNNING v1 after QUEUED v3 and RUNNING v0 applies, because the phase change stored version 0."""
    state = state_after(
        task_event("n0", Phase.QUEUED, 1, phase_version=3),
        task_event("n0", Phase.RUNNING, 2, phase_version=0),
    )

    transition = fold_task_event(state, task_event("n0", Phase.RUNNING, 3, phase_version=1))

    assert transition.outcome is Outcome.APPLIED


def test_older_running_fills_start():
    state = state_after(task_event("n0", Phase.QUEUED, 1), task_event("n0", Phase.SUCCEEDED, 10))

    transition = fold_task_event(state, task_event("n0", Phase.RUNNING, 3))

    closure = closure_of(transition.state)
    assert transition.outcome is Outcome.STALE
    assert transition.changed
    assert closure.phase == Phase.SUCCEEDED
    assert closure.started_at == timestamp(3)
    assert closure.duration.ToSeconds() == 7


def test_older_running_fills_start_keeps_input():
    state = state_after(task_event("n0", Phase.SUCCEEDED, 10))
    before = copy_of(state)

    fold_task_event(state, task_event("n0", Phase.RUNNING, 3))

    assert state == before


def test_older_event_fills_input_and_type():
    state = state_after(task_event("n0", Phase.RUNNING, 5))

    transition = fold_task_event(
        state, task_event("n0", Phase.QUEUED, 2, input_uri="s3://b/i.pb", task_type="python-task")
    )

    assert transition.outcome is Outcome.STALE
    assert transition.changed
    assert transition.state.task_execution.input_uri == "s3://b/i.pb"
    assert closure_of(transition.state).task_type == "python-task"
    assert closure_of(transition.state).phase == Phase.RUNNING


def test_older_event_without_news_unchanged():
    state = state_after(task_event("n0", Phase.RUNNING, 2), task_event("n0", Phase.FAILED, 8))

    transition = fold_task_event(state, task_event("n0", Phase.QUEUED, 1))

    assert transition.outcome is Outcome.STALE
    assert progress_fields(closure_of(transition.state)) == progress_fields(closure_of(state))


def test_same_instant_higher_version_applies():
    state = state_after(task_event("n0", Phase.RUNNING, 2, phase_version=0))

    transition = fold_task_event(state, task_event("n0", Phase.RUNNING, 2, phase_version=1, logs=[task_log("a")]))

    assert transition.outcome is Outcome.APPLIED


def test_logs_merge_across_events():
    state = state_after(
        task_event("n0", Phase.RUNNING, 1, logs=[task_log("stdout")]),
        task_event("n0", Phase.RUNNING, 2, phase_version=1, logs=[task_log("dashboard")]),
        task_event("n0", Phase.SUCCEEDED, 3),
    )

    assert [log.name for log in closure_of(state).logs] == ["dashboard", "stdout"]


def test_logs_same_uri_replaced():
    state = state_after(
        task_event("n0", Phase.RUNNING, 1, logs=[task_log("Pod (pending)", "https://k8s/pod")]),
        task_event("n0", Phase.RUNNING, 2, phase_version=1, logs=[task_log("Pod", "https://k8s/pod")]),
    )

    assert [log.name for log in closure_of(state).logs] == ["Pod"]


def test_logs_pending_phase_filtered():
    logs = [task_log("pending", show_while_pending=True), task_log("pod")]

    state = state_after(task_event("n0", Phase.QUEUED, 1, logs=logs))

    assert [log.name for log in closure_of(state).logs] == ["pending"]


def test_logs_hidden_once_finished():
    logs = [task_log("live", hide_once_finished=True), task_log("archive")]

    state = state_after(task_event("n0", Phase.RUNNING, 1, logs=logs), task_event("n0", Phase.SUCCEEDED, 2))

    assert [log.name for log in closure_of(state).logs] == ["archive"]


def test_reasons_appended():
    state = state_after(
        task_event("n0", Phase.QUEUED, 1, reasons=[reason("submitted", 1)]),
        task_event("n0", Phase.QUEUED, 2, phase_version=1, reasons=[reason("pulling image", 2), reason("pod pending")]),
    )

    reasons = closure_of(state).reasons
    assert [entry.message for entry in reasons] == ["submitted", "pulling image", "pod pending"]
    assert reasons[2].occurred_at == timestamp(2)
    assert closure_of(state).reason == "pod pending"


def test_legacy_reason_appended_when_new():
    state = state_after(
        task_event("n0", Phase.QUEUED, 1, reason="submitted"),
        task_event("n0", Phase.QUEUED, 2, phase_version=1, reason="submitted"),
        task_event("n0", Phase.RUNNING, 3, reason="running"),
    )

    assert [entry.message for entry in closure_of(state).reasons] == ["submitted", "running"]
    assert closure_of(state).reason == "running"


def test_custom_info_merge():
    state = state_after(
        task_event("n0", Phase.RUNNING, 1, custom_info=struct({"a": 1, "b": {"c": 2, "d": 3}})),
        task_event("n0", Phase.RUNNING, 2, phase_version=1, custom_info=struct({"b": {"c": None}, "e": "x"})),
    )

    assert json_format.MessageToDict(closure_of(state).custom_info) == {"a": 1, "b": {"d": 3}, "e": "x"}


def test_custom_info_kept_when_absent():
    state = state_after(
        task_event("n0", Phase.RUNNING, 1, custom_info=struct({"a": 1})), task_event("n0", Phase.SUCCEEDED, 2)
    )

    assert json_format.MessageToDict(closure_of(state).custom_info) == {"a": 1}


def test_metadata_names():
    first = event_pb2.TaskExecutionMetadata(generated_name="exec1-n0-0", plugin_identifier="k8s-array")
    second = event_pb2.TaskExecutionMetadata(instance_class=event_pb2.TaskExecutionMetadata.INTERRUPTIBLE)

    state = state_after(
        task_event("n0", Phase.RUNNING, 1, metadata=first),
        task_event("n0", Phase.RUNNING, 2, phase_version=1, metadata=second),
    )

    metadata = closure_of(state).metadata
    assert metadata.generated_name == "exec1-n0-0"
    assert metadata.plugin_identifier == "k8s-array"
    assert metadata.instance_class == event_pb2.TaskExecutionMetadata.INTERRUPTIBLE


def test_metadata_external_resources():
    first = event_pb2.TaskExecutionMetadata(
        external_resources=[event_pb2.ExternalResourceInfo(index=1, external_id="job-1", phase=Phase.RUNNING)],
    )
    second = event_pb2.TaskExecutionMetadata(
        external_resources=[
            event_pb2.ExternalResourceInfo(index=0, external_id="job-0", phase=Phase.RUNNING),
            event_pb2.ExternalResourceInfo(index=1, phase=Phase.SUCCEEDED, cache_status=catalog_pb2.CACHE_POPULATED),
        ]
    )

    state = state_after(
        task_event("n0", Phase.RUNNING, 1, metadata=first),
        task_event("n0", Phase.RUNNING, 2, phase_version=1, metadata=second),
    )

    metadata = closure_of(state).metadata
    assert [resource.index for resource in metadata.external_resources] == [0, 1]
    assert metadata.external_resources[1].external_id == "job-1"
    assert metadata.external_resources[1].phase == Phase.SUCCEEDED
    assert metadata.external_resources[1].cache_status == catalog_pb2.CACHE_POPULATED


def test_event_version_max():
    state = state_after(task_event("n0", Phase.QUEUED, 1, event_version=1), task_event("n0", Phase.RUNNING, 2))

    assert closure_of(state).event_version == 1


def test_without_occurred_at_invalid():
    transition = fold_task_event(None, task_event("n0", Phase.RUNNING, None))

    assert transition.outcome is Outcome.INVALID
    assert transition.state is None


def test_without_occurred_at_keeps_state():
    state = state_after(task_event("n0", Phase.RUNNING, 1))

    transition = fold_task_event(state, task_event("n0", Phase.SUCCEEDED, None))

    assert transition.outcome is Outcome.INVALID
    assert not transition.changed
    assert transition.state == state


def test_unknown_phase_invalid():
    transition = fold_task_event(None, task_event("n0", 77, 1))

    assert transition.outcome is Outcome.INVALID


def test_older_event_logs_after_stored():
    state = state_after(task_event("n0", Phase.RUNNING, 5, logs=[task_log("stdout")]))

    older = task_event("n0", Phase.QUEUED, 2, logs=[task_log("pending", show_while_pending=True)])

    transition = fold_task_event(state, older)

    assert transition.outcome is Outcome.STALE
    assert [log.name for log in closure_of(transition.state).logs] == ["stdout", "pending"]


def test_older_event_reasons_ordered():
    state = state_after(task_event("n0", Phase.RUNNING, 5, reasons=[reason("running", 5)]))

    transition = fold_task_event(state, task_event("n0", Phase.QUEUED, 2, reasons=[reason("submitted", 2)]))

    closure = closure_of(transition.state)
    assert [entry.message for entry in closure.reasons] == ["submitted", "running"]
    assert closure.reason == "running"


def test_older_custom_info_under_stored():
    state = state_after(task_event("n0", Phase.RUNNING, 5, custom_info=struct({"a": 1})))

    transition = fold_task_event(state, task_event("n0", Phase.QUEUED, 2, custom_info=struct({"a": 0, "b": 2})))

    assert json_format.MessageToDict(closure_of(transition.state).custom_info) == {"a": 1, "b": 2}


def test_first_event_with_subtasks():
    metadata = event_pb2.TaskExecutionMetadata(external_resources=[event_pb2.ExternalResourceInfo(index=0)])

    transition = fold_task_event(None, task_event("n0", Phase.RUNNING, 1, metadata=metadata))

    assert len(closure_of(transition.state).metadata.external_resources) == 1


def test_event_details_not_published():
    state = state_after(task_event("n0", Phase.RUNNING, 1, custom_info=struct({"a": 1}), reason="running"))

    assert len(state.event_details) == 1
    assert state.event_details[0].reason == "running"
    assert list(public_view(state).event_details) == []


def test_event_details_skip_plain_events():
    queued = task_event("n0", Phase.QUEUED, 1)
    running = task_event("n0", Phase.RUNNING, 2, reasons=[reason("pulling image", 2)])

    state = state_after(queued, running)

    assert [details.fingerprint for details in state.event_details] == [ledger.fingerprint(running)]


def test_legacy_reason_ignored_beside_reasons():
    state = state_after(task_event("n0", Phase.QUEUED, 1, reason="legacy", reasons=[reason("structured", 1)]))

    assert state.event_details[0].reason == ""
    assert [entry.message for entry in closure_of(state).reasons] == ["structured"]


def test_event_details_dropped_after_first_terminal():
    first = task_event("n0", Phase.RUNNING, 1, custom_info=struct({"a": 1}))
    late = task_event("n0", Phase.RUNNING, 5, phase_version=1, custom_info=struct({"b": 2}))

    state = state_after(first, late, task_event("n0", Phase.SUCCEEDED, 3))

    assert [details.fingerprint for details in state.event_details] == [ledger.fingerprint(first)]
    assert json_format.MessageToDict(closure_of(state).custom_info) == {"a": 1}


def test_accepted_duplicate_adds_details():
    """A duplicate's details are kept, because an event that arrives later can make it a phase change."""
    running = task_event("n0", Phase.RUNNING, 1, phase_version=1, custom_info=struct({"a": 1}))
    repeated = task_event("n0", Phase.RUNNING, 3, phase_version=1, custom_info=struct({"b": 2}), reason="again")
    state = state_after(running, repeated)
    assert json_format.MessageToDict(closure_of(state).custom_info) == {"a": 1}

    transition = fold_task_event(state, task_event("n0", Phase.QUEUED, 2))

    closure = closure_of(transition.state)
    assert closure.phase == Phase.RUNNING
    assert json_format.MessageToDict(closure.custom_info) == {"a": 1, "b": 2}
    assert closure.reason == "again"


def test_custom_info_absent_without_patches():
    state = state_after(task_event("n0", Phase.RUNNING, 1, reason="running"))

    assert not closure_of(state).HasField("custom_info")


def test_empty_custom_info_patch_kept():
    state = state_after(task_event("n0", Phase.RUNNING, 1, custom_info=struct_pb2.Struct()))

    assert closure_of(state).HasField("custom_info")


def subtask_report(phase, **fields) -> event_pb2.TaskExecutionMetadata:
    return event_pb2.TaskExecutionMetadata(
        external_resources=[event_pb2.ExternalResourceInfo(index=0, phase=phase, **fields)]
    )


# Three reports of subtask 0 in occurred_at order; the newest carries only the phase.
SUBTASK_REPORTS = [
    task_event(
        "n0",
        Phase.RUNNING,
        1,
        metadata=subtask_report(
            Phase.RUNNING,
            external_id="job-0",
            cache_status=catalog_pb2.CACHE_MISS,
            log_context=execution_pb2.LogContext(primary_pod_name="pod-a"),
        ),
    ),
    task_event(
        "n0",
        Phase.RUNNING,
        2,
        phase_version=1,
        metadata=subtask_report(
            Phase.RUNNING,
            cache_status=catalog_pb2.CACHE_POPULATED,
            log_context=execution_pb2.LogContext(primary_pod_name="pod-b"),
        ),
    ),
    task_event("n0", Phase.RUNNING, 3, phase_version=2, metadata=subtask_report(Phase.SUCCEEDED)),
]


@pytest.mark.parametrize("order", list(itertools.permutations(range(3))), ids=str)
def test_subtask_fields_any_report_order(order):
    state = state_after(*[SUBTASK_REPORTS[index] for index in order])

    subtask = closure_of(state).metadata.external_resources[0]
    assert subtask.phase == Phase.SUCCEEDED
    assert subtask.external_id == "job-0"
    assert subtask.cache_status == catalog_pb2.CACHE_POPULATED
    assert subtask.log_context.primary_pod_name == "pod-b"


def test_subtask_source_keeps_older_field_reports():
    state = state_after(SUBTASK_REPORTS[2], SUBTASK_REPORTS[1])

    source = state.subtask_sources[0]
    assert source.phase_version == 2
    assert source.cache_status_source.phase_version == 1
    assert source.log_context_source.phase_version == 1
    assert not source.HasField("external_id_source")


def test_subtask_source_omits_phase_report_fields():
    state = state_after(*SUBTASK_REPORTS[:2])

    source = state.subtask_sources[0]
    assert source.phase_version == 1
    assert source.external_id_source.phase_version == 0
    for name in ("cache_status", "custom_info", "workflow_node_metadata", "log_context"):
        assert not source.HasField(f"{name}_source"), name


# Property tests: the same events in any delivery order give the same published record.

ORDER_SETTINGS = settings(max_examples=200, deadline=None)

JSON_VALUES = st.one_of(
    st.none(),
    st.integers(min_value=0, max_value=2),
    st.sampled_from(["a", "b"]),
    st.fixed_dictionaries({"p": st.one_of(st.none(), st.integers(min_value=0, max_value=2))}),
)
PATCHES = st.dictionaries(st.sampled_from(["x", "y", "z"]), JSON_VALUES, max_size=3)
REASON_TEXTS = st.sampled_from(["submitted", "ContainerCreating", "running"])


@st.composite
def detail_fields(draw) -> dict:
    """Draw the custom_info patch and reasons of one event: none, a legacy reason or a list of reasons."""
    fields = {}
    if draw(st.booleans()):
        fields["custom_info"] = struct(draw(PATCHES))
    kind = draw(st.sampled_from(["none", "legacy", "reasons"]))
    if kind == "legacy":
        fields["reason"] = draw(REASON_TEXTS)
    elif kind == "reasons":
        texts = draw(st.lists(REASON_TEXTS, min_size=1, max_size=2))
        fields["reasons"] = [reason(text, draw(st.none() | st.integers(min_value=1, max_value=12))) for text in texts]
    return fields


@st.composite
def any_task_event(draw) -> event_pb2.TaskExecutionEvent:
    """Draw an event of any phase, version and time, ties and terminal phases included."""
    phase = draw(st.sampled_from([phase for phase in Phase.Phase.values() if phase != Phase.UNDEFINED]))
    return task_event(
        "n0",
        phase,
        draw(st.integers(min_value=1, max_value=12)),
        phase_version=draw(st.integers(min_value=0, max_value=2)),
        **draw(detail_fields()),
    )


@ORDER_SETTINGS
@given(events=st.lists(any_task_event(), min_size=1, max_size=6), data=st.data())
def test_custom_info_and_reasons_any_order(events, data):
    delivery = data.draw(st.permutations(events))

    assert public_view(state_after(*delivery)) == public_view(state_after(*events))


@st.composite
def subtask_reports(draw) -> event_pb2.TaskExecutionMetadata:
    """Draw a report of subtasks 0 and 1, each field present or not; logs are left out, they merge by arrival."""
    metadata = event_pb2.TaskExecutionMetadata()
    for index in draw(st.lists(st.sampled_from([0, 1]), min_size=1, max_size=2, unique=True)):
        report = metadata.external_resources.add(
            index=index,
            phase=draw(st.sampled_from([Phase.QUEUED, Phase.RUNNING, Phase.RETRYABLE_FAILED, Phase.SUCCEEDED])),
            external_id=draw(st.sampled_from(["", "job-a", "job-b"])),
            cache_status=draw(
                st.sampled_from([catalog_pb2.CACHE_DISABLED, catalog_pb2.CACHE_MISS, catalog_pb2.CACHE_POPULATED])
            ),
        )
        if draw(st.booleans()):
            report.log_context.primary_pod_name = draw(st.sampled_from(["pod-a", "pod-b"]))
        if draw(st.booleans()):
            report.custom_info.update({"attempt": draw(st.integers(min_value=0, max_value=2))})
        if draw(st.booleans()):
            report.workflow_node_metadata.execution_id.name = draw(st.sampled_from(["child-a", "child-b"]))
    return metadata


@st.composite
def accepted_task_events(draw) -> list[event_pb2.TaskExecutionEvent]:
    """Draw events that are accepted in every delivery order.

    Times grow, and so do (phase rank, phase_version), so no event is ever a
    duplicate of another and the order of subtask reports is occurred_at order.
    """
    phases = [Phase.QUEUED, Phase.INITIALIZING, Phase.RUNNING]
    phase_index, version = 0, 0
    events = []
    for at in range(1, draw(st.integers(min_value=2, max_value=6)) + 1):
        if at > 1 and phase_index < len(phases) - 1 and draw(st.booleans()):
            phase_index, version = phase_index + 1, 0
        elif at > 1:
            version += 1
        fields = draw(detail_fields())
        event = task_event(
            "n0", phases[phase_index], at, phase_version=version, metadata=draw(subtask_reports()), **fields
        )
        events.append(event)
    return events


@ORDER_SETTINGS
@given(events=accepted_task_events(), data=st.data())
def test_subtasks_any_order(events, data):
    delivery = data.draw(st.permutations(events))

    assert public_view(state_after(*delivery)) == public_view(state_after(*events))
