"""Key text forms of processor.ids and the checks on their parts."""

import pytest
from flyteidl.core import identifier_pb2

from processor import ids

from .builders import execution_id


def test_execution_key_without_org():
    assert ids.execution_key(execution_id("abc")) == "flytesnacks:development:abc"


def test_execution_key_with_org():
    assert ids.execution_key(execution_id("abc", org="acme")) == "acme/flytesnacks:development:abc"


def test_node_key_appends_node_id():
    assert ids.node_key("p:d:n", "n0-0-dn1") == "p:d:n/n0-0-dn1"


def test_task_key_appends_task_and_attempt():
    assert ids.task_key("p:d:n", "n0", "wf.train", 2) == "p:d:n/n0/wf.train/2"


@pytest.mark.parametrize("field", ["project", "domain", "name"])
def test_execution_key_missing_part(field):
    identifier = execution_id()
    setattr(identifier, field, "")

    with pytest.raises(ids.InvalidIdError, match=f"missing execution_id.{field}"):
        ids.execution_key(identifier)


@pytest.mark.parametrize(
    "field, value",
    [
        ("project", "flyte:snacks"),
        ("domain", "dev/elopment"),
        ("name", "a\x00b"),
        ("name", "a\x1bb"),
        ("name", "a b"),
        ("org", "ac:me"),
        ("org", "ac/me"),
        ("name", "x" * (ids.MAX_PART_LENGTH + 1)),
    ],
)
def test_execution_key_invalid_part(field, value):
    identifier = execution_id()
    setattr(identifier, field, value)

    with pytest.raises(ids.InvalidIdError):
        ids.execution_key(identifier)


def test_execution_key_max_length_part():
    name = "x" * ids.MAX_PART_LENGTH

    assert ids.execution_key(execution_id(name)).endswith(name)


@pytest.mark.parametrize(
    "field, value", [("project", "flytesnacks\n"), ("domain", "development\n"), ("name", "exec1\n"), ("org", "acme\n")]
)
def test_execution_key_trailing_newline(field, value):
    identifier = execution_id()
    setattr(identifier, field, value)

    with pytest.raises(ids.InvalidIdError):
        ids.execution_key(identifier)


@pytest.mark.parametrize("node_id", ["", "n:0", "n/0", "n\x07", "n 0"])
def test_node_key_invalid_node_id(node_id):
    with pytest.raises(ids.InvalidIdError):
        ids.node_key("p:d:n", node_id)


@pytest.mark.parametrize(
    "node_id, task_name",
    [("", "wf.train"), ("n0", ""), ("n/0", "wf.train"), ("n0", "wf/train"), ("n0", "wf:train"), ("n0", "wf\ttrain")],
)
def test_task_key_invalid_parts(node_id, task_name):
    with pytest.raises(ids.InvalidIdError):
        ids.task_key("p:d:n", node_id, task_name, 0)


@pytest.mark.parametrize(
    "identifier",
    [execution_id("abc"), execution_id("abc", org="acme"), execution_id("a.b-c_d", project="p1", domain="d1")],
    ids=["plain", "org", "punctuation"],
)
def test_parse_execution_key_round_trip(identifier):
    parsed = ids.parse_execution_key(ids.execution_key(identifier))

    assert parsed == identifier


def test_parse_execution_key_returns_identifier():
    parsed = ids.parse_execution_key("acme/p:d:n")

    assert isinstance(parsed, identifier_pb2.WorkflowExecutionIdentifier)
    assert parsed.org == "acme"
    assert parsed.project == "p"
    assert parsed.domain == "d"
    assert parsed.name == "n"


@pytest.mark.parametrize(
    "text",
    ["", "p:d", "p:d:n:x", "p::n", ":d:n", "p:d:", "a/b/p:d:n", "p:d:n/n0", "p:d:n\x00", "p d:d:n"],
)
def test_parse_execution_key_invalid(text):
    with pytest.raises(ids.InvalidIdError):
        ids.parse_execution_key(text)


def test_parse_execution_key_empty_org():
    with pytest.raises(ids.InvalidIdError):
        ids.parse_execution_key("/p:d:n")


def test_node_key_trailing_newline():
    with pytest.raises(ids.InvalidIdError):
        ids.node_key("p:d:n", "n0\n")
