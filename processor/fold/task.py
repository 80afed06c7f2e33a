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

custom_info and reasons are derived the same way, from the custom_info
patches and reasons that the record keeps for its ledger events. Logs and
metadata merge from every accepted event as it arrives.
"""

from __future__ import annotations

from flyteidl.admin import task_execution_pb2
from flyteidl.core import catalog_pb2
from flyteidl.event import event_pb2
from google.protobuf import struct_pb2

from processor.fold import ledger, merge, timestamps
from processor.fold.outcome import Outcome, Transition
from processor.fold.phases import TASK_RANK, TASK_TERMINAL, TaskPhase
from processor.fold.public import public_equal
from processor.fold.progress import Progress, write_progress
from processor.messages import SubtaskSource, TaskExecutionState

TaskTransition = Transition[TaskExecutionState]


def fold_task_event(state: TaskExecutionState | None, event: event_pb2.TaskExecutionEvent) -> TaskTransition:
    """Fold one TaskExecutionEvent into the record of its attempt."""
    rejection, event_fingerprint = ledger.screen_event(state, event, TASK_RANK, "task")
    if rejection is not None:
        return rejection

    new_state = TaskExecutionState()
    if state is not None:
        new_state.CopyFrom(state)
    else:
        task_id = new_state.task_execution.id
        task_id.task_id.CopyFrom(event.task_id)
        task_id.node_execution_id.CopyFrom(event.parent_node_execution_id)
        task_id.retry_attempt = event.retry_attempt

    new_state.seen_fingerprints.append(event_fingerprint)
    new_entry = ledger.entry_from_event(event, event_fingerprint)
    entries, appended = ledger.with_entry(new_state.ledger, new_entry, TASK_RANK.__getitem__)
    progress = derive_progress(entries)
    apply_progress(new_state, progress, appended=appended)
    if appended:
        add_last_event_details(new_state, event, new_entry, progress)
    else:
        keep_event_details(new_state, event, event_fingerprint, progress)
        derive_custom_info_and_reasons(new_state, progress)

    outcome = progress.verdicts[event_fingerprint]
    if outcome is Outcome.APPLIED:
        is_newest = progress.newest_accepted.fingerprint == event_fingerprint
        apply_details(new_state, event, is_newest=is_newest)
        if not is_newest:
            outcome = Outcome.STALE
    return Transition(new_state, outcome, state is None or not public_equal(new_state, state))


def derive_progress(entries) -> Progress:
    """Walk the entries, in ledger order, and apply the task rules to each."""
    progress = Progress()
    for entry in entries:
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


def apply_progress(state: TaskExecutionState, progress: Progress, *, appended: bool = False) -> None:
    closure = state.task_execution.closure
    write_progress(closure, progress, uri_field="output_uri")
    state.phase_version = progress.phase_version
    ledger.store_kept(state.ledger, progress.kept, appended)
    if progress.updated_at is not None:
        state.last_event_occurred_at.CopyFrom(progress.updated_at)

    # The visible logs depend on the phase, which an older event can change
    # only by arriving first; filter again whatever the event was.
    visible = merge.filter_logs_for_phase(closure.logs, closure.phase)
    if len(visible) != len(closure.logs):
        del closure.logs[:]
        closure.logs.extend(visible)


def apply_details(state: TaskExecutionState, event: event_pb2.TaskExecutionEvent, *, is_newest: bool) -> None:
    """Merge what an accepted event carries besides its phase, custom_info and reasons, in place.

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
    apply_metadata(state, event, is_newest=is_newest)

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


def keep_event_details(
    state: TaskExecutionState, event: event_pb2.TaskExecutionEvent, event_fingerprint: int, progress: Progress
) -> None:
    """Store the event's custom_info patch and reasons, in ledger order.

    Details are kept for every entry of the ledger, rejected ones included,
    because an event that arrives later can turn a duplicate into an accepted
    event. Details of entries that left the ledger are dropped with them.
    """
    by_fingerprint = {details.fingerprint: details for details in state.event_details}
    new_details = _event_details(event, event_fingerprint)
    if new_details is not None:
        by_fingerprint[event_fingerprint] = new_details

    ordered = []
    for entry in progress.kept:
        details = by_fingerprint.get(entry.fingerprint)
        if details is not None:
            copy = TaskExecutionState.EventDetails()
            copy.CopyFrom(details)
            ordered.append(copy)
    del state.event_details[:]
    state.event_details.extend(ordered)


def _event_details(
    event: event_pb2.TaskExecutionEvent, event_fingerprint: int
) -> TaskExecutionState.EventDetails | None:
    """Return what the event carries for custom_info and reasons, or None when it carries neither."""
    legacy_reason = event.reason if not event.reasons else ""
    if not event.HasField("custom_info") and not event.reasons and not legacy_reason:
        return None

    details = TaskExecutionState.EventDetails(fingerprint=event_fingerprint, reason=legacy_reason)
    if event.HasField("custom_info"):
        details.custom_info.CopyFrom(event.custom_info)
    for reason in event.reasons:
        stored = details.reasons.add(message=reason.reason)
        stored.occurred_at.CopyFrom(reason.occurred_at if reason.HasField("occurred_at") else event.occurred_at)
    return details


def derive_custom_info_and_reasons(state: TaskExecutionState, progress: Progress) -> None:
    """Apply FlyteAdmin's custom_info and reasons rules to the accepted events in ledger order, in place.

    Each custom_info patch is an RFC 7386 merge patch over the result so far.
    Every entry of ``reasons`` is added, and a legacy single ``reason`` only
    when it differs from the current reason, the last one in occurred_at order.
    """
    by_fingerprint = {details.fingerprint: details for details in state.event_details}
    custom_info = None
    reasons: list[task_execution_pb2.Reason] = []
    for entry in progress.kept:
        details = by_fingerprint.get(entry.fingerprint)
        if details is None or progress.verdicts[entry.fingerprint] is not Outcome.APPLIED:
            continue
        custom_info, reasons = _with_details(custom_info, reasons, details, entry)
    _write_custom_info_and_reasons(state.task_execution.closure, custom_info, reasons)


def add_last_event_details(
    state: TaskExecutionState, event: event_pb2.TaskExecutionEvent, entry, progress: Progress
) -> None:
    """Do what keep_event_details and derive_custom_info_and_reasons do, for an entry that went last.

    ``entry`` is the event's entry, placed after every stored one
    (``ledger.with_entry`` returned True). The walk over the stored entries
    is then the one that gave the stored details, custom_info and reasons,
    so only this entry can add to them: its details when the walk kept it,
    and its custom_info patch and reasons when it was applied too.
    """
    if progress.kept[-1] is not entry:
        return
    details = _event_details(event, entry.fingerprint)
    if details is None:
        return
    state.event_details.append(details)
    if progress.verdicts[entry.fingerprint] is not Outcome.APPLIED:
        return

    closure = state.task_execution.closure
    custom_info = closure.custom_info if closure.HasField("custom_info") else None
    custom_info, reasons = _with_details(custom_info, list(closure.reasons), details, entry)
    _write_custom_info_and_reasons(closure, custom_info, reasons)


def _with_details(custom_info, reasons: list, details: TaskExecutionState.EventDetails, entry) -> tuple:
    """Return custom_info and reasons after one applied event's details; the inputs are not changed."""
    if details.HasField("custom_info"):
        stored = custom_info if custom_info is not None else struct_pb2.Struct()
        custom_info = merge.merge_custom_info(stored, details.custom_info)

    added = list(details.reasons)
    current_reason = reasons[-1].message if reasons else ""
    if not added and details.reason and details.reason != current_reason:
        legacy = task_execution_pb2.Reason(message=details.reason)
        legacy.occurred_at.CopyFrom(entry.occurred_at)
        added.append(legacy)
    return custom_info, merge.add_reasons(reasons, added)


def _write_custom_info_and_reasons(closure, custom_info, reasons: list) -> None:
    if custom_info is None:
        closure.ClearField("custom_info")
    else:
        closure.custom_info.CopyFrom(custom_info)
    del closure.reasons[:]
    closure.reasons.extend(reasons)
    closure.reason = reasons[-1].message if reasons else ""


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


# Subtask fields that come from the newest report carrying them, each with its
# test of whether a report carries it.
_SUBTASK_FIELDS = {
    "external_id": lambda subtask: bool(subtask.external_id),
    "cache_status": lambda subtask: subtask.cache_status != catalog_pb2.CACHE_DISABLED,
    "custom_info": lambda subtask: subtask.HasField("custom_info"),
    "workflow_node_metadata": lambda subtask: subtask.HasField("workflow_node_metadata"),
    "log_context": lambda subtask: subtask.HasField("log_context"),
}
_SUBTASK_SCALAR_FIELDS = frozenset({"external_id", "cache_status"})


def _report_key(report: SubtaskSource.Report) -> tuple:
    """Order of subtask reports: task phase, then phase_version within it, then occurred_at.

    NOTE: of two reports with equal keys, the one that arrived first is kept.
    """
    return (TASK_RANK.get(report.task_phase, 0), report.phase_version, timestamps.sort_key(report.occurred_at))


def merge_subtasks(state: TaskExecutionState, event: event_pb2.TaskExecutionEvent) -> None:
    """Merge the event's external resources by (index, retry_attempt).

    A subtask's phase comes from the newest report of it, so a late event never
    moves a subtask back. external_id when non-empty, cache status unless
    CACHE_DISABLED, custom_info, workflow_node_metadata and log_context each
    come from the newest report that carries them, whatever order the reports
    arrive in. Logs merge: the newest report's logs first, an older report's
    logs only where they differ from the stored ones.
    """
    subtasks = state.task_execution.closure.metadata.external_resources
    sources = state.subtask_sources
    # The caller owns ``state``, so its subtasks and sources change in place.
    subtask_at = {_identity(subtask): position for position, subtask in enumerate(subtasks)}
    source_at = {_identity(source): position for position, source in enumerate(sources)}

    event_report = SubtaskSource.Report(task_phase=event.phase, phase_version=event.phase_version)
    event_report.occurred_at.CopyFrom(event.occurred_at)

    added = False
    for report in event.metadata.external_resources:
        identity = _identity(report)
        position = subtask_at.get(identity)
        source_position = source_at.get(identity)
        if position is None:
            current = subtasks.add()
            current.CopyFrom(report)
            subtask_at[identity] = len(subtasks) - 1
            source = _subtask_source(current, event_report, {})
            added = True
        else:
            stored_source = sources[source_position] if source_position is not None else None
            source = _merge_subtask(subtasks[position], stored_source, report, event_report)

        if source_position is None:
            sources.add().CopyFrom(source)
            source_at[identity] = len(sources) - 1
            added = True
        else:
            sources[source_position].CopyFrom(source)

    if added:
        _sort_by_identity(subtasks)
        _sort_by_identity(sources)


def _identity(subtask) -> tuple[int, int]:
    """Return the identity (index, retry_attempt) of an ExternalResourceInfo or of its SubtaskSource."""
    return (subtask.index, subtask.retry_attempt)


def _sort_by_identity(subtasks) -> None:
    """Sort a repeated field of subtasks or sources by identity, in place, as every fold leaves them."""
    identities = [_identity(subtask) for subtask in subtasks]
    if identities == sorted(identities):
        return
    ordered = sorted(subtasks, key=_identity)
    del subtasks[:]
    subtasks.extend(ordered)


def _merge_subtask(current, source: SubtaskSource | None, report, event_report: SubtaskSource.Report) -> SubtaskSource:
    """Merge one report into the stored subtask, in place, and return the subtask's new source."""
    phase_report = None
    field_reports = dict.fromkeys(_SUBTASK_FIELDS)
    if source is not None:
        phase_report = SubtaskSource.Report(task_phase=source.task_phase, phase_version=source.phase_version)
        phase_report.occurred_at.CopyFrom(source.occurred_at)
        for name in _SUBTASK_FIELDS:
            source_field = f"{name}_source"
            field_reports[name] = getattr(source, source_field) if source.HasField(source_field) else phase_report
    event_key = _report_key(event_report)

    if phase_report is None or event_key > _report_key(phase_report):
        current.phase = report.phase
        phase_report = event_report
        merged_logs = merge.merge_logs(current.logs, report.logs)
    elif current.logs:
        merged_logs = merge.merge_logs(report.logs, current.logs)
    else:
        merged_logs = list(report.logs)
    del current.logs[:]
    current.logs.extend(merged_logs)

    for name, carries in _SUBTASK_FIELDS.items():
        if not carries(report):
            continue
        stored_report = field_reports[name]
        if carries(current) and stored_report is not None and event_key <= _report_key(stored_report):
            continue
        if name in _SUBTASK_SCALAR_FIELDS:
            setattr(current, name, getattr(report, name))
        else:
            getattr(current, name).CopyFrom(getattr(report, name))
        field_reports[name] = event_report
    return _subtask_source(current, phase_report, field_reports)


def _subtask_source(subtask, phase_report: SubtaskSource.Report, field_reports: dict) -> SubtaskSource:
    """Build the source of a subtask; a field's report is stored only when it is not the phase's report."""
    source = SubtaskSource(
        index=subtask.index,
        retry_attempt=subtask.retry_attempt,
        task_phase=phase_report.task_phase,
        phase_version=phase_report.phase_version,
    )
    source.occurred_at.CopyFrom(phase_report.occurred_at)
    phase_key = _report_key(phase_report)
    for name, report in field_reports.items():
        if report is not None and _SUBTASK_FIELDS[name](subtask) and _report_key(report) != phase_key:
            getattr(source, f"{name}_source").CopyFrom(report)
    return source
