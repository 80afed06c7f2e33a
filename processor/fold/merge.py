"""Merges of list- and map-shaped task fields: logs, custom_info, reasons, external resources."""

from __future__ import annotations

from typing import Any, Iterable

from flyteidl.core import catalog_pb2, execution_pb2
from google.protobuf import json_format, struct_pb2

from processor.fold import timestamps
from processor.fold.phases import TASK_TERMINAL, TaskPhase

_PENDING_PHASES = frozenset({TaskPhase.QUEUED, TaskPhase.INITIALIZING})


def merge_logs(
    stored: Iterable[execution_pb2.TaskLog], latest: Iterable[execution_pb2.TaskLog]
) -> list[execution_pb2.TaskLog]:
    """Return the latest logs followed by each stored log whose URI and name both differ from all of them.

    Names change while a task moves through its phases, so a stored log with
    the same URI or the same name as a new one is the older copy of it.
    """
    latest = list(latest)
    stored = list(stored)
    if not latest:
        return stored

    latest_uris = {log.uri for log in latest}
    latest_names = {log.name for log in latest if log.name}
    merged = list(latest)
    for log in stored:
        if log.uri not in latest_uris and log.name not in latest_names:
            merged.append(log)
    return merged


def filter_logs_for_phase(logs: Iterable[execution_pb2.TaskLog], phase: int) -> list[execution_pb2.TaskLog]:
    """Drop the logs the phase must not show.

    While QUEUED or INITIALIZING only logs marked ShowWhilePending are shown
    (the pod may not exist yet); in a terminal phase logs marked
    HideOnceFinished are hidden.
    """
    kept = []
    for log in logs:
        if phase in _PENDING_PHASES and not log.ShowWhilePending:
            continue
        if phase in TASK_TERMINAL and log.HideOnceFinished:
            continue
        kept.append(log)
    return kept


def json_merge_patch(target: Any, patch: Any) -> Any:
    """Apply an RFC 7386 JSON merge patch and return the result; the inputs are not changed.

    Objects merge recursively, a null member deletes, and any other value
    (lists included) replaces the target.
    """
    if not isinstance(patch, dict):
        return patch

    result = dict(target) if isinstance(target, dict) else {}
    for name, value in patch.items():
        if value is None:
            result.pop(name, None)
        else:
            result[name] = json_merge_patch(result.get(name), value)
    return result


def merge_custom_info(stored: struct_pb2.Struct, patch: struct_pb2.Struct) -> struct_pb2.Struct:
    merged = json_merge_patch(json_format.MessageToDict(stored), json_format.MessageToDict(patch))
    result = struct_pb2.Struct()
    result.update(merged)
    return result


def add_reasons(reasons: Iterable, added: Iterable) -> list:
    """Return the reasons and the added ones sorted by occurred_at; equal times keep the stored reasons first."""
    return sorted([*reasons, *added], key=lambda reason: timestamps.sort_key(reason.occurred_at))


def merge_external_resources(stored, latest) -> list:
    """Merge subtask reports by (index, retry_attempt), sorted by that pair.

    Phase always follows the latest report; external_id only when non-empty;
    cache status unless the latest is CACHE_DISABLED; logs merge as for the
    task; custom_info is replaced when present.
    """
    by_identity = {}
    for resource in stored:
        copy = type(resource)()
        copy.CopyFrom(resource)
        by_identity[(resource.index, resource.retry_attempt)] = copy

    for resource in latest:
        identity = (resource.index, resource.retry_attempt)
        current = by_identity.get(identity)
        if current is None:
            copy = type(resource)()
            copy.CopyFrom(resource)
            by_identity[identity] = copy
            continue

        current.phase = resource.phase
        if resource.external_id:
            current.external_id = resource.external_id
        if resource.cache_status != catalog_pb2.CACHE_DISABLED:
            current.cache_status = resource.cache_status
        merged_logs = merge_logs(current.logs, resource.logs)
        del current.logs[:]
        current.logs.extend(merged_logs)
        if resource.HasField("custom_info"):
            current.custom_info.CopyFrom(resource.custom_info)
        if resource.HasField("workflow_node_metadata"):
            current.workflow_node_metadata.CopyFrom(resource.workflow_node_metadata)
        if resource.HasField("log_context"):
            current.log_context.CopyFrom(resource.log_context)

    return [by_identity[identity] for identity in sorted(by_identity)]
