"""Text and JSON renderings of state records in processor.render."""

import json

import pytest

from processor.fold import ExecutionFolder, InMemoryStateStore
from processor.fold.execution import RecordKind
from processor.render import json_lines, render_execution, render_overview

from .builders import (
    EXECUTION_KEY,
    TASK_NAME,
    NodePhase,
    TaskPhase,
    WorkflowPhase,
    error,
    keyed,
    node_event,
    task_event,
    workflow_event,
)

OTHER_KEY = "flytesnacks:development:other"


def folded_records(*messages):
    folder = ExecutionFolder(InMemoryStateStore())
    for message in messages:
        folder.fold(keyed(message))
    return folder.store.records


@pytest.fixture(scope="module")
def records():
    """A failed execution with a dynamic parent node, a child node with a task, and an inferred execution."""
    return folded_records(
        workflow_event(WorkflowPhase.RUNNING, 1),
        node_event("n0", NodePhase.RUNNING, 2, is_parent=True, is_dynamic=True),
        node_event("n0-0-dn0", NodePhase.RUNNING, 3, parent="n0"),
        task_event("n0-0-dn0", TaskPhase.RUNNING, 4),
        task_event("n0-0-dn0", TaskPhase.FAILED, 5, error=error("USER:ValueError")),
        node_event("n0-0-dn0", NodePhase.FAILED, 95, parent="n0", error=error("USER:ValueError")),
        node_event("n0", NodePhase.FAILED, 96, error=error("USER:ValueError")),
        workflow_event(WorkflowPhase.FAILED, 3701, error=error("USER:ValueError")),
        node_event("n9", NodePhase.QUEUED, 2, name="other"),
    )


def lines_starting(text: str, prefix: str) -> list[str]:
    return [line for line in text.splitlines() if line.startswith(prefix)]


def test_overview_empty():
    assert render_overview(folded_records()) == "no workflow executions in the state topics"


def test_overview_has_keys(records):
    overview = render_overview(records)

    assert EXECUTION_KEY in overview
    assert OTHER_KEY in overview


def test_overview_header(records):
    header = render_overview(records).splitlines()[0]

    assert header.split() == ["EXECUTION", "PHASE", "STARTED", "DURATION", "NODES", "TASKS"]


def test_overview_row(records):
    row = lines_starting(render_overview(records), EXECUTION_KEY)[0]

    assert row.split() == [EXECUTION_KEY, "FAILED", "2026-11-03", "10:00:01", "1h01m40s", "FAILED=2", "FAILED=1"]


def test_overview_inferred(records):
    row = lines_starting(render_overview(records), OTHER_KEY)[0]

    assert "(inferred)" in row
    assert "QUEUED=1" in row


def test_detail_not_found(records):
    assert render_execution(records, "p:d:missing") == "execution p:d:missing not found in the state topics"


def test_detail_header(records):
    detail = render_execution(records, EXECUTION_KEY)
    lines = detail.splitlines()

    assert lines[0] == f"execution {EXECUTION_KEY}"
    assert lines[1].split() == ["phase:", "FAILED"]
    assert lines[3].split() == ["duration:", "1h01m40s"]
    assert lines[4] == "  error:    USER:ValueError: task failed"


def test_detail_indents_children(records):
    detail = render_execution(records, EXECUTION_KEY)

    assert lines_starting(detail, "  n0 ")[0].split()[1] == "FAILED"
    assert lines_starting(detail, "    n0-0-dn0 ")[0].split()[1] == "FAILED"


def test_detail_task_under_node(records):
    detail = render_execution(records, EXECUTION_KEY)
    task_line = lines_starting(detail, f"      task {TASK_NAME} attempt 0")[0]

    assert "FAILED" in task_line.split()
    assert task_line.rstrip().endswith("USER:ValueError")


def test_detail_row_order(records):
    rows = render_execution(records, EXECUTION_KEY).splitlines()
    first_words = [row.split()[0] for row in rows if row.startswith("  ") and row.split()]

    assert first_words.index("n0") < first_words.index("n0-0-dn0") < first_words.index("task")


def test_detail_excludes_other_execution(records):
    assert "n9" not in render_execution(records, EXECUTION_KEY)


def test_detail_inferred(records):
    assert "(inferred from node or task events)" in render_execution(records, OTHER_KEY)


def test_detail_task_log_count():
    records = folded_records(
        workflow_event(WorkflowPhase.RUNNING, 1),
        node_event("n0", NodePhase.RUNNING, 2),
        task_event("n0", TaskPhase.RUNNING, 3),
    )

    task_line = lines_starting(render_execution(records, EXECUTION_KEY), f"    task {TASK_NAME}")[0]

    assert task_line.rstrip().endswith("0 logs")


@pytest.mark.parametrize("seconds, text", [(1, "1.0s"), (59, "59.0s"), (90, "1m30s"), (3600, "1h00m00s")])
def test_duration_format(seconds, text):
    records = folded_records(workflow_event(WorkflowPhase.RUNNING, 0), workflow_event(WorkflowPhase.SUCCEEDED, seconds))

    assert render_execution(records, EXECUTION_KEY).splitlines()[3].split() == ["duration:", text]


def test_json_lines_shape(records):
    objects = [json.loads(line) for line in json_lines(records)]

    assert all(set(item) == {"kind", "key", "state"} for item in objects)


def test_json_lines_count(records):
    objects = [json.loads(line) for line in json_lines(records)]

    assert len(objects) == sum(len(records[kind]) for kind in RecordKind)


def test_json_lines_kinds_and_keys(records):
    pairs = [(item["kind"], item["key"]) for item in map(json.loads, json_lines(records))]

    assert ("workflow", EXECUTION_KEY) in pairs
    assert ("node", f"{EXECUTION_KEY}/n0-0-dn0") in pairs
    assert ("task", f"{EXECUTION_KEY}/n0-0-dn0/{TASK_NAME}/0") in pairs
    assert ("summary", OTHER_KEY) in pairs


def test_json_lines_state(records):
    objects = {(item["kind"], item["key"]): item["state"] for item in map(json.loads, json_lines(records))}

    workflow = objects[("workflow", EXECUTION_KEY)]
    assert workflow["execution"]["closure"]["phase"] == "FAILED"
    assert workflow["version"] == "2"
