"""Text and JSON renderings of state records for the ``state`` command."""

from __future__ import annotations

import json
from typing import Iterator

from google.protobuf import json_format

from processor.expectations import Records
from processor.fold.execution import RecordKind
from processor.fold.phases import node_phase_name, task_phase_name, workflow_phase_name


def _format_time(timestamp, present: bool) -> str:
    if not present:
        return "-"
    return timestamp.ToDatetime().strftime("%Y-%m-%d %H:%M:%S")


def _format_duration(duration, present: bool) -> str:
    if not present:
        return "-"
    seconds = duration.ToNanoseconds() / 1e9
    if seconds < 60:
        return f"{seconds:.1f}s"
    minutes, seconds = divmod(int(seconds), 60)
    hours, minutes = divmod(minutes, 60)
    return f"{hours}h{minutes:02d}m{seconds:02d}s" if hours else f"{minutes}m{seconds:02d}s"


def _format_counts(counts) -> str:
    if not counts:
        return "-"
    return " ".join(f"{phase}={count}" for phase, count in sorted(counts.items()))


def _table(header: list[str], rows: list[list[str]]) -> str:
    widths = [max(len(str(cell)) for cell in column) for column in zip(header, *rows)]
    lines = ["  ".join(str(cell).ljust(width) for cell, width in zip(row, widths)).rstrip() for row in [header, *rows]]
    lines.insert(1, "  ".join("-" * width for width in widths))
    return "\n".join(lines)


def render_overview(records: Records) -> str:
    """Render one row per workflow execution: phase, start, duration, nodes and tasks by phase."""
    rows = []
    workflows = records[RecordKind.WORKFLOW]
    summaries = records[RecordKind.SUMMARY]
    for key in sorted(workflows, key=lambda k: workflows[k].execution.closure.created_at.ToNanoseconds(), reverse=True):
        closure = workflows[key].execution.closure
        summary = summaries.get(key)
        phase = workflow_phase_name(closure.phase)
        if workflows[key].inferred:
            phase = "(inferred)"
        rows.append(
            [
                key,
                phase,
                _format_time(closure.started_at, closure.HasField("started_at")),
                _format_duration(closure.duration, closure.HasField("duration")),
                _format_counts(summary.node_phase_counts) if summary else "-",
                _format_counts(summary.task_phase_counts) if summary else "-",
            ]
        )
    if not rows:
        return "no workflow executions in the state topics"
    return _table(["EXECUTION", "PHASE", "STARTED", "DURATION", "NODES", "TASKS"], rows)


def render_execution(records: Records, execution_key: str) -> str:
    """Render the workflow execution, its nodes (children indented under parents) and their task attempts."""
    workflow = records[RecordKind.WORKFLOW].get(execution_key)
    if workflow is None:
        return f"execution {execution_key} not found in the state topics"

    closure = workflow.execution.closure
    lines = [
        f"execution {execution_key}",
        f"  phase:    {workflow_phase_name(closure.phase)}" + (" (inferred from node or task events)" if workflow.inferred else ""),
        f"  started:  {_format_time(closure.started_at, closure.HasField('started_at'))}",
        f"  duration: {_format_duration(closure.duration, closure.HasField('duration'))}",
    ]
    if closure.HasField("error"):
        lines.append(f"  error:    {closure.error.code}: {closure.error.message}")

    prefix = execution_key + "/"
    nodes = {key[len(prefix):]: state for key, state in records[RecordKind.NODE].items() if key.startswith(prefix)}
    tasks = [(key[len(prefix):], state) for key, state in records[RecordKind.TASK].items() if key.startswith(prefix)]

    rows: list[list[str]] = []

    def add_node(node_id: str, depth: int) -> None:
        node = nodes[node_id]
        node_closure = node.node_execution.closure
        rows.append(
            [
                "  " * depth + node_id,
                node_phase_name(node_closure.phase),
                _format_time(node_closure.started_at, node_closure.HasField("started_at")),
                _format_duration(node_closure.duration, node_closure.HasField("duration")),
                node_closure.error.code if node_closure.HasField("error") else "",
            ]
        )
        for task_path, task in sorted(tasks):
            task_node, task_name, attempt = task_path.split("/")
            if task_node != node_id:
                continue
            task_closure = task.task_execution.closure
            rows.append(
                [
                    "  " * (depth + 1) + f"task {task_name} attempt {attempt}",
                    task_phase_name(task_closure.phase),
                    _format_time(task_closure.started_at, task_closure.HasField("started_at")),
                    _format_duration(task_closure.duration, task_closure.HasField("duration")),
                    task_closure.error.code if task_closure.HasField("error") else f"{len(task_closure.logs)} logs",
                ]
            )
        for child_id in sorted(child for child, state in nodes.items() if state.parent_node_id == node_id):
            add_node(child_id, depth + 1)

    top_level = sorted(
        (node_id for node_id, state in nodes.items() if not state.parent_node_id or state.parent_node_id not in nodes),
        key=lambda node_id: (nodes[node_id].node_execution.closure.created_at.ToNanoseconds(), node_id),
    )
    for node_id in top_level:
        add_node(node_id, 1)

    if rows:
        lines.append("")
        lines.append(_table(["NODE / TASK", "PHASE", "STARTED", "DURATION", "ERROR / LOGS"], rows))
    return "\n".join(lines)


def json_lines(records: Records) -> Iterator[str]:
    """Yield one JSON object per record: kind, key and the state message in protobuf JSON."""
    for kind in RecordKind:
        for key in sorted(records[kind]):
            state = json_format.MessageToDict(records[kind][key])
            yield json.dumps({"kind": kind.value, "key": key, "state": state}, sort_keys=True)
