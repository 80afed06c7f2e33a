"""Reading JSON Lines stream files with processor.streamfile."""

import io
import json

import pytest
from google.protobuf import json_format

from processor.events import EventKind
from processor.streamfile import StreamFileError, StreamLine, parse_line, read_stream, read_stream_lenient

from .builders import (
    EXECUTION_KEY,
    TASK_NAME,
    NodePhase,
    TaskPhase,
    WorkflowPhase,
    node_event,
    task_event,
    workflow_event,
)


def line(kind: str, message) -> str:
    return json.dumps({"kind": kind, "event": json_format.MessageToDict(message)})


WORKFLOW_LINE = line("workflow", workflow_event(WorkflowPhase.RUNNING, 1))
NODE_LINE = line("node", node_event("n0", NodePhase.QUEUED, 2))
TASK_LINE = line("task", task_event("n0", TaskPhase.RUNNING, 3, retry_attempt=1))


def write(tmp_path, *lines: str, name: str = "stream.jsonl") -> str:
    path = tmp_path / name
    path.write_text("".join(text + "\n" for text in lines), encoding="utf-8")
    return str(path)


@pytest.mark.parametrize(
    "text, kind, entity_key",
    [
        (WORKFLOW_LINE, EventKind.WORKFLOW, EXECUTION_KEY),
        (NODE_LINE, EventKind.NODE, f"{EXECUTION_KEY}/n0"),
        (TASK_LINE, EventKind.TASK, f"{EXECUTION_KEY}/n0/{TASK_NAME}/1"),
    ],
    ids=["workflow", "node", "task"],
)
def test_parse_line_valid(text, kind, entity_key):
    event = parse_line(text, "stream.jsonl", 1)

    assert event.kind is kind
    assert event.execution_key == EXECUTION_KEY
    assert event.entity_key == entity_key


def test_parse_line_snake_case_fields():
    text = json.dumps(
        {
            "kind": "workflow",
            "event": {
                "execution_id": {"project": "flytesnacks", "domain": "development", "name": "exec1"},
                "phase": "SUCCEEDED",
                "occurred_at": "2026-11-03T10:00:00Z",
            },
        }
    )

    event = parse_line(text, "stream.jsonl", 1)

    assert event.message.phase == WorkflowPhase.SUCCEEDED


INVALID_LINES = [
    ("{not json", "invalid JSON"),
    ("[1, 2]", 'expected an object with "kind" and "event"'),
    ('{"kind": "workflow"}', 'expected an object with "kind" and "event"'),
    ('{"event": {}}', 'expected an object with "kind" and "event"'),
    ('{"kind": "launch_plan", "event": {}}', "unknown kind 'launch_plan'"),
    ('{"kind": ["workflow"], "event": {}}', "unknown kind"),
    ('{"kind": "workflow", "event": {"phase": "NOT_A_PHASE"}}', "invalid flyteidl.event.WorkflowExecutionEvent"),
    ('{"kind": "node", "event": {"noSuchField": 1}}', "invalid flyteidl.event.NodeExecutionEvent"),
    ('{"kind": "task", "event": {"occurredAt": "yesterday"}}', "invalid flyteidl.event.TaskExecutionEvent"),
    ('{"kind": "workflow", "event": {"phase": "RUNNING"}}', "workflow event has no workflow execution id"),
    (
        '{"kind": "node", "event": {"id": {"executionId": {"project": "p", "domain": "d", "name": "n"}}}}',
        "missing node_id",
    ),
    (
        '{"kind": "workflow", "event": {"executionId": {"project": "p", "domain": "d", "name": "a:b"}}}',
        "invalid execution_id.name",
    ),
]


@pytest.mark.parametrize("text, detail", INVALID_LINES)
def test_parse_line_invalid(text, detail):
    with pytest.raises(StreamFileError) as caught:
        parse_line(text, "events.jsonl", 12)

    message = str(caught.value)
    assert message.startswith("events.jsonl:12: ")
    assert detail in message


@pytest.mark.parametrize("event", ["5", "null", "true"])
def test_parse_line_event_not_object(event):
    with pytest.raises(StreamFileError):
        parse_line(f'{{"kind": "workflow", "event": {event}}}', "events.jsonl", 1)


def test_read_stream_valid(tmp_path):
    path = write(tmp_path, WORKFLOW_LINE, NODE_LINE, TASK_LINE)

    lines = list(read_stream(path))

    assert [item.event.kind for item in lines] == [EventKind.WORKFLOW, EventKind.NODE, EventKind.TASK]
    assert [item.line_number for item in lines] == [1, 2, 3]
    assert all(item.source == path for item in lines)


def test_read_stream_skips_blank_lines(tmp_path):
    path = write(tmp_path, "", WORKFLOW_LINE, "   ", "\t", NODE_LINE, "")

    lines = list(read_stream(path))

    assert [item.line_number for item in lines] == [2, 5]


def test_read_stream_raises_at_bad_line(tmp_path):
    path = write(tmp_path, WORKFLOW_LINE, "{oops", NODE_LINE)
    reader = read_stream(path)

    first = next(reader)

    assert first.line_number == 1
    with pytest.raises(StreamFileError, match=f"^{path}:2: invalid JSON"):
        next(reader)


def test_read_stream_lenient_continues(tmp_path):
    path = write(tmp_path, WORKFLOW_LINE, "{oops", "", '{"kind": "dag", "event": {}}', NODE_LINE)

    items = list(read_stream_lenient(path))

    assert len(items) == 4
    assert isinstance(items[0], StreamLine)
    assert isinstance(items[1], StreamFileError)
    assert str(items[1]).startswith(f"{path}:2: ")
    assert isinstance(items[2], StreamFileError)
    assert str(items[2]).startswith(f"{path}:4: ")
    assert isinstance(items[3], StreamLine)
    assert items[3].line_number == 5


def test_read_stream_stdin(monkeypatch):
    stdin = io.TextIOWrapper(io.BytesIO((WORKFLOW_LINE + "\n{bad\n").encode()))
    monkeypatch.setattr("sys.stdin", stdin)

    items = list(read_stream_lenient("-"))

    assert isinstance(items[0], StreamLine)
    assert items[0].source == "<stdin>"
    assert str(items[1]).startswith("<stdin>:2: ")


def test_read_stream_missing_file(tmp_path):
    with pytest.raises(FileNotFoundError):
        list(read_stream(str(tmp_path / "absent.jsonl")))


def test_read_stream_lenient_invalid_utf8(tmp_path):
    path = tmp_path / "stream.jsonl"
    path.write_bytes(b'{"kind": "\xff"}\n' + WORKFLOW_LINE.encode() + b"\n")

    items = list(read_stream_lenient(str(path)))

    assert isinstance(items[0], StreamFileError)
    assert isinstance(items[1], StreamLine)


def test_parse_line_deeply_nested_json():
    with pytest.raises(StreamFileError) as caught:
        parse_line("[" * 5_000 + "]" * 5_000, "events.jsonl", 3)

    assert str(caught.value).startswith("events.jsonl:3: invalid JSON")
