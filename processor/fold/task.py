"""Transitions of a task execution attempt record.

The record is ``TaskExecutionState``; ``task_execution`` follows FlyteAdmin's
``TaskExecution``, and the state adds phase_version, which FlyteAdmin keeps in
a database column. Phase, phase_version, times and result are derived from
the record's ledger in occurred_at order:

- terminal phases are SUCCEEDED, FAILED and ABORTED (RETRYABLE_FAILED is not);
- an event with the current phase and a phase_version not above the current
  one is a duplicate; a higher version updates; a phase change always applies
  and takes the event's version. FlyteAdmin keeps the old version on a phase
  change, because its ORM skips zero values, which turns later updates of the
  new phase into duplicates; this fold does not copy that;
- the first RUNNING sets started_at; the first terminal event sets duration.

Logs, reasons, custom_info and metadata merge from every accepted event.
"""

from __future__ import annotations

from flyteidl.core import catalog_pb2
from flyteidl.event import event_pb2

from processor.fold import ledger, merge, timestamps
from processor.fold.outcome import Outcome, Transition
from processor.fold.phases import TASK_RANK, TASK_TERMINAL, TaskPhase
from processor.fold.public import public_view
from processor.fold.progress import Progress, write_progress
from processor.messages import SubtaskSource, TaskExecutionState

TaskTransition = Transition[TaskExecutionState]


def fold_task_event(state: TaskExecutionState | None, event: event_pb2.TaskExecutionEvent) -> TaskTransition:
    """Fold one TaskExecutionEvent into the record of its attempt."""
    if not event.HasField("occurred_at"):
        return Transition(state, Outcome.INVALID, False, "event has no occurred_at")
    if event.phase not in TASK_RANK:
        return Transition(state, Outcome.INVALID, False, f"unknown task phase {event.phase}")

    event_fingerprint = ledger.fingerprint(event)
    if state is not None and event_fingerprint in state.seen_fingerprints:
        return Transition(state, Outcome.DUPLICATE, False, "event was already folded", replayed=True)

    new_state = TaskExecutionState()
    if state is not None:
        new_state.CopyFrom(state)
    else:
        task_id = new_state.task_execution.id
        task_id.task_id.CopyFrom(event.task_id)
        task_id.node_execution_id.CopyFrom(event.parent_node_execution_id)
        task_id.retry_attempt = event.retry_attempt

    new_state.seen_fingerprints.append(event_fingerprint)
    entries = [*new_state.ledger, ledger.entry_from_event(event, event_fingerprint)]
    progress = derive_progress(entries)
    apply_progress(new_state, progress)

    outcome = progress.verdicts[event_fingerprint]
    if outcome is Outcome.APPLIED:
        is_newest = progress.newest_accepted.fingerprint == event_fingerprint
        apply_details(new_state, event, is_newest=is_newest)
        if not is_newest:
            outcome = Outcome.STALE
    return Transition(new_state, outcome, state is None or public_view(new_state) != public_view(state))


def derive_progress(entries) -> Progress:
    progress = Progress()
    for entry in ledger.sorted_entries(entries, TASK_RANK.__getitem__):
        if progress.terminal_at is not None:
            progress.reject(entry, Outcome.ALREADY_TERMINAL)
            continue
        progress.kept.append(entry)

        if entry.phase == progress.phase and entry.phase_version <= progress.phase_version:
            progress.reject(entry, Outcome.DUPLICATE)
            continue

        progress.accept(entry)
        progress.phase_version = entry.phase_version
        if progress.created_at is None:
            progress.created_at = entry.occurred_at
        if entry.phase == TaskPhase.RUNNING and progress.started_at is None:
            progress.started_at = entry.occurred_at
        if entry.phase in TASK_TERMINAL:
            progress.terminal_at = entry.occurred_at
        if ledger.has_result(entry):
            progress.result = entry
    return progress


def apply_progress(state: TaskExecutionState, progress: Progress) -> None:
    closure = state.task_execution.closure
    write_progress(closure, progress, uri_field="output_uri")
    state.phase_version = progress.phase_version
    del state.ledger[:]
    state.ledger.extend(progress.kept)
    if progress.updated_at is not None:
        state.last_event_occurred_at.CopyFrom(progress.updated_at)

    # The visible logs depend on the phase, which an older event can change
    # only by arriving first; filter again whatever the event was.
    visible = merge.filter_logs_for_phase(closure.logs, closure.phase)
    if len(visible) != len(closure.logs):
        del closure.logs[:]
        closure.logs.extend(visible)


def apply_details(state: TaskExecutionState, event: event_pb2.TaskExecutionEvent, *, is_newest: bool) -> None:
    """Merge what an accepted event carries besides its phase, in place.

    The newest event overwrites; an older one fills only what is missing.
    """
    task_execution = state.task_execution
    closure = task_execution.closure

    if event.producer_id and (is_newest or not state.producer_id):
        state.producer_id = event.producer_id
    if event.input_uri and not task_execution.input_uri:
        task_execution.input_uri = event.input_uri
    if event.task_type and (is_newest or not closure.task_type):
        closure.task_type = event.task_type
    closure.event_version = max(closure.event_version, event.event_version)

    apply_logs(state, event, is_newest=is_newest)
    apply_reasons(state, event)
    apply_metadata(state, event, is_newest=is_newest)

    if event.HasField("custom_info"):
        if is_newest:
            merged = merge.merge_custom_info(closure.custom_info, event.custom_info)
        else:
            merged = merge.merge_custom_info(event.custom_info, closure.custom_info)
        closure.custom_info.CopyFrom(merged)
    if event.HasField("log_context") and (is_newest or not closure.HasField("log_context")):
        closure.log_context.CopyFrom(event.log_context)


def apply_logs(state: TaskExecutionState, event: event_pb2.TaskExecutionEvent, *, is_newest: bool) -> None:
    """The event's logs, then each stored log whose URI and name both differ; filtered for the phase.

    For an older event the stored logs take the event's place, so they win.
    """
    closure = state.task_execution.closure
    if is_newest:
        merged = merge.merge_logs(closure.logs, event.logs)
    else:
        merged = merge.merge_logs(event.logs, closure.logs) if closure.logs else list(event.logs)
    visible = merge.filter_logs_for_phase(merged, closure.phase)
    del closure.logs[:]
    closure.logs.extend(visible)


def apply_reasons(state: TaskExecutionState, event: event_pb2.TaskExecutionEvent) -> None:
    """Add the event's reasons, keeping the list in occurred_at order; the current reason is the last.

    A legacy single ``reason`` is added only when it differs from the current one.
    """
    closure = state.task_execution.closure
    added = []
    for reason in event.reasons:
        added.append((reason.reason, reason.occurred_at if reason.HasField("occurred_at") else event.occurred_at))
    if not event.reasons and event.reason and event.reason != closure.reason:
        added.append((event.reason, event.occurred_at))
    if not added:
        return

    for message, occurred_at in added:
        entry = closure.reasons.add(message=message)
        entry.occurred_at.CopyFrom(occurred_at)

    ordered = sorted(closure.reasons, key=lambda reason: timestamps.sort_key(reason.occurred_at))
    copies = []
    for reason in ordered:
        copy = type(reason)()
        copy.CopyFrom(reason)
        copies.append(copy)
    del closure.reasons[:]
    closure.reasons.extend(copies)
    closure.reason = closure.reasons[-1].message


def apply_metadata(state: TaskExecutionState, event: event_pb2.TaskExecutionEvent, *, is_newest: bool) -> None:
    """Merge TaskExecutionMetadata: names change only to non-default values, subtasks merge one by one."""
    if not event.HasField("metadata"):
        return

    stored = state.task_execution.closure.metadata
    latest = event.metadata
    if latest.generated_name and (is_newest or not stored.generated_name):
        stored.generated_name = latest.generated_name
    if latest.plugin_identifier and (is_newest or not stored.plugin_identifier):
        stored.plugin_identifier = latest.plugin_identifier
    if latest.instance_class and (is_newest or not stored.instance_class):
        stored.instance_class = latest.instance_class
    if latest.resource_pool_info and (is_newest or not stored.resource_pool_info):
        del stored.resource_pool_info[:]
        stored.resource_pool_info.extend(latest.resource_pool_info)

    if latest.external_resources:
        merge_subtasks(state, event)


def _source_key(task_phase: int, phase_version: int, occurred_at) -> tuple:
    """Order of subtask reports: task phase, then phase_version within it, then occurred_at."""
    return (TASK_RANK.get(task_phase, 0), phase_version, timestamps.sort_key(occurred_at))


def merge_subtasks(state: TaskExecutionState, event: event_pb2.TaskExecutionEvent) -> None:
    """Merge the event's external resources by (index, retry_attempt).

    A subtask's phase comes from the newest report of it, so a late event never
    moves a subtask back. From the newest report: phase always, external_id
    when non-empty, cache status unless CACHE_DISABLED, logs merged, custom_info
    replaced when present. An older report fills only what is missing.
    """
    metadata = state.task_execution.closure.metadata
    resources = {(resource.index, resource.retry_attempt): resource for resource in metadata.external_resources}
    sources = {(source.index, source.retry_attempt): source for source in state.subtask_sources}
    event_key = _source_key(event.phase, event.phase_version, event.occurred_at)

    merged = {}
    for identity, resource in resources.items():
        copy = type(resource)()
        copy.CopyFrom(resource)
        merged[identity] = copy
    new_sources = {}
    for identity, source in sources.items():
        copy = SubtaskSource()
        copy.CopyFrom(source)
        new_sources[identity] = copy

    for report in event.metadata.external_resources:
        identity = (report.index, report.retry_attempt)
        current = merged.get(identity)
        source = new_sources.get(identity)
        is_newer = source is None or event_key > _source_key(source.task_phase, source.phase_version, source.occurred_at)

        if current is None:
            current = type(report)()
            current.CopyFrom(report)
            merged[identity] = current
        elif is_newer:
            _overwrite_subtask(current, report)
        else:
            _fill_subtask(current, report)

        if is_newer:
            source = SubtaskSource(
                index=report.index,
                retry_attempt=report.retry_attempt,
                task_phase=event.phase,
                phase_version=event.phase_version,
            )
            source.occurred_at.CopyFrom(event.occurred_at)
            new_sources[identity] = source

    del metadata.external_resources[:]
    metadata.external_resources.extend(merged[identity] for identity in sorted(merged))
    del state.subtask_sources[:]
    state.subtask_sources.extend(new_sources[identity] for identity in sorted(new_sources))


def _overwrite_subtask(current, report) -> None:
    current.phase = report.phase
    if report.external_id:
        current.external_id = report.external_id
    if report.cache_status != catalog_pb2.CACHE_DISABLED:
        current.cache_status = report.cache_status
    merged_logs = merge.merge_logs(current.logs, report.logs)
    del current.logs[:]
    current.logs.extend(merged_logs)
    if report.HasField("custom_info"):
        current.custom_info.CopyFrom(report.custom_info)
    if report.HasField("workflow_node_metadata"):
        current.workflow_node_metadata.CopyFrom(report.workflow_node_metadata)
    if report.HasField("log_context"):
        current.log_context.CopyFrom(report.log_context)


def _fill_subtask(current, report) -> None:
    if report.external_id and not current.external_id:
        current.external_id = report.external_id
    if report.logs:
        merged_logs = merge.merge_logs(report.logs, current.logs) if current.logs else list(report.logs)
        del current.logs[:]
        current.logs.extend(merged_logs)
    if report.HasField("custom_info") and not current.HasField("custom_info"):
        current.custom_info.CopyFrom(report.custom_info)
    if report.HasField("workflow_node_metadata") and not current.HasField("workflow_node_metadata"):
        current.workflow_node_metadata.CopyFrom(report.workflow_node_metadata)
