"""Execution ids and the text keys of the state topics.

Key text forms (UTF-8 on the wire):

- workflow execution: ``project:domain:name``, or ``org/project:domain:name``
  when the execution id carries an org;
- node execution: ``<execution key>/<node_id>``;
- task execution: ``<execution key>/<node_id>/<task name>/<retry attempt>``.

Flyte restricts project, domain and execution names to letters, digits, ``-``
and ``_``, and node ids to those plus ``-``, so ``:`` and ``/`` never occur
inside a part. The parts are still checked, because a value from the wrong
topic can decode into an identifier that contains control bytes.
"""

from __future__ import annotations

import re

from flyteidl.core import identifier_pb2

# Characters a part of a key may contain. Wider than Flyte's own validation
# (dots occur in task names), but without the separators and control bytes.
_PART_PATTERN = re.compile(r"^[A-Za-z0-9_.\-]+$")

MAX_PART_LENGTH = 255


class InvalidIdError(ValueError):
    """An event's identifier is missing or contains characters no Flyte id has."""


# Parts that passed the check. Projects, domains, node ids and task names
# repeat in every event of an execution, so most checks end here. Cleared
# when full, which bounds it whatever names arrive.
_VALID_PARTS: set[str] = set()
_MAX_VALID_PARTS = 100_000


def _check_part(kind: str, value: str, *, allow_empty: bool = False) -> None:
    if value in _VALID_PARTS:
        return
    if not value:
        if allow_empty:
            return
        raise InvalidIdError(f"missing {kind}")

    if len(value) > MAX_PART_LENGTH:
        raise InvalidIdError(f"{kind} is longer than {MAX_PART_LENGTH} characters")

    if not _PART_PATTERN.fullmatch(value):
        raise InvalidIdError(f"invalid {kind} {value!r}: only letters, digits, '.', '-' and '_' are allowed")

    if len(_VALID_PARTS) >= _MAX_VALID_PARTS:
        _VALID_PARTS.clear()
    _VALID_PARTS.add(value)


def execution_key(execution_id: identifier_pb2.WorkflowExecutionIdentifier) -> str:
    """Return the key text of a workflow execution, raising InvalidIdError for a bad id."""
    _check_part("execution_id.project", execution_id.project)
    _check_part("execution_id.domain", execution_id.domain)
    _check_part("execution_id.name", execution_id.name)
    _check_part("execution_id.org", execution_id.org, allow_empty=True)

    key = f"{execution_id.project}:{execution_id.domain}:{execution_id.name}"
    if execution_id.org:
        key = f"{execution_id.org}/{key}"
    return key


def node_key(execution: str, node_id: str) -> str:
    _check_part("node_id", node_id)
    return f"{execution}/{node_id}"


def task_key(execution: str, node_id: str, task_name: str, retry_attempt: int) -> str:
    _check_part("node_id", node_id)
    _check_part("task_id.name", task_name)
    return f"{execution}/{node_id}/{task_name}/{retry_attempt}"


def parse_execution_key(key: str) -> identifier_pb2.WorkflowExecutionIdentifier:
    """Invert execution_key; raises InvalidIdError for text that is not an execution key."""
    org = ""
    rest = key
    if "/" in key:
        org, rest = key.split("/", 1)
        if not org:
            raise InvalidIdError(f"invalid execution key {key!r}: the org before '/' is empty")

    parts = rest.split(":")
    if len(parts) != 3:
        raise InvalidIdError(f"invalid execution key {key!r}: expected [org/]project:domain:name")

    execution_id = identifier_pb2.WorkflowExecutionIdentifier(
        project=parts[0], domain=parts[1], name=parts[2], org=org
    )
    execution_key(execution_id)
    return execution_id
