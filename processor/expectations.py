"""Check a set of state records against the facts of an ``*.expect.json`` file.

The file maps a record kind (workflow, node, task) to keys in the state
topics' text form, and each key to facts such as ``phase``, ``has_started_at``
or ``log_count``. ``node_count`` of a workflow is read from its summary.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Callable, Mapping, Optional

from flyteidl.core import catalog_pb2
from google.protobuf.message import Message

from processor.fold.execution import RecordKind
from processor.fold.phases import node_phase_name, task_phase_name, workflow_phase_name

Records = Mapping[RecordKind, Mapping[str, Message]]


def _closure(kind: RecordKind, state: Message):
    if kind is RecordKind.WORKFLOW:
        return state.execution.closure
    if kind is RecordKind.NODE:
        return state.node_execution.closure
    return state.task_execution.closure


def _phase_name(kind: RecordKind, state: Message) -> str:
    phase = _closure(kind, state).phase
    if kind is RecordKind.WORKFLOW:
        return workflow_phase_name(phase)
    if kind is RecordKind.NODE:
        return node_phase_name(phase)
    return task_phase_name(phase)


def _error_code(kind: RecordKind, state: Message) -> str:
    closure = _closure(kind, state)
    return closure.error.code if closure.HasField("error") else ""


def _cache_status(kind: RecordKind, state: Message) -> str:
    return catalog_pb2.CatalogCacheStatus.Name(state.node_execution.closure.task_node_metadata.cache_status)


def _summary_count(records: Records, key: str, name: str) -> Optional[int]:
    # The summary is a record of its own topic, which a reader can see after
    # the execution's other records; None fails the fact until it arrives.
    summary = records.get(RecordKind.SUMMARY, {}).get(key)
    return getattr(summary, name) if summary is not None else None


FACT_READERS: dict[str, Callable[[RecordKind, Message, Records, str], Any]] = {
    "phase": lambda kind, state, records, key: _phase_name(kind, state),
    "has_started_at": lambda kind, state, records, key: _closure(kind, state).HasField("started_at"),
    "has_duration": lambda kind, state, records, key: _closure(kind, state).HasField("duration"),
    "error_code": lambda kind, state, records, key: _error_code(kind, state),
    "log_count": lambda kind, state, records, key: len(state.task_execution.closure.logs),
    "cache_status": lambda kind, state, records, key: _cache_status(kind, state),
    "is_dynamic": lambda kind, state, records, key: state.node_execution.metadata.is_dynamic,
    "is_parent": lambda kind, state, records, key: state.node_execution.metadata.is_parent_node,
    "parent_node_id": lambda kind, state, records, key: state.parent_node_id,
    "spec_node_id": lambda kind, state, records, key: state.node_execution.metadata.spec_node_id,
    "node_count": lambda kind, state, records, key: _summary_count(records, key, "node_count"),
    "task_count": lambda kind, state, records, key: _summary_count(records, key, "task_count"),
}

_EXECUTION_FACTS = ("phase", "has_started_at", "has_duration", "error_code")

# The facts that apply to each record kind a facts file may name.
FACTS_BY_KIND: dict[RecordKind, tuple[str, ...]] = {
    RecordKind.WORKFLOW: (*_EXECUTION_FACTS, "node_count", "task_count"),
    RecordKind.NODE: (*_EXECUTION_FACTS, "cache_status", "is_dynamic", "is_parent", "parent_node_id", "spec_node_id"),
    RecordKind.TASK: (*_EXECUTION_FACTS, "log_count"),
}


class InvalidFactsFile(ValueError):
    """A facts file that cannot be read, is not JSON, or is not shaped as kind -> key -> fact -> value."""


def load(path: str | Path) -> dict:
    """Read and validate one ``*.expect.json`` file; raise InvalidFactsFile naming the file and what is wrong."""
    try:
        with Path(path).open(encoding="utf-8") as handle:
            expected = json.load(handle, object_pairs_hook=_object_without_duplicate_keys)
    except OSError as error:
        raise InvalidFactsFile(f"failed to read facts file {path}: {error.strerror or error}") from error
    except _DuplicateKey as error:
        raise InvalidFactsFile(f"invalid facts file {path}: {error}") from error
    except (ValueError, RecursionError) as error:
        # UnicodeDecodeError is a ValueError too.
        raise InvalidFactsFile(f"facts file {path} is not valid JSON: {error}") from error

    problem = _shape_problem(expected)
    if problem:
        raise InvalidFactsFile(f"invalid facts file {path}: {problem}")
    return expected


class _DuplicateKey(Exception):
    """A JSON object of a facts file names one key twice; json keeps only the last value."""


def _object_without_duplicate_keys(pairs: list[tuple[str, Any]]) -> dict:
    result = {}
    for key, value in pairs:
        if key in result:
            raise _DuplicateKey(f"key {key!r} appears twice in one object")
        result[key] = value
    return result


def _shape_problem(expected: Any) -> str:
    """Return what makes ``expected`` unusable as facts, or an empty string when it is usable."""
    kinds = [kind.value for kind in FACTS_BY_KIND]
    if not isinstance(expected, dict):
        return f"expected a JSON object whose keys are record kinds ({', '.join(kinds)})"

    for kind_name, entries in expected.items():
        if kind_name not in kinds:
            return f"unknown record kind {kind_name!r}: use {', '.join(kinds)}"
        if not isinstance(entries, dict):
            return f"{kind_name}: expected a JSON object of record keys"

        allowed = FACTS_BY_KIND[RecordKind(kind_name)]
        for key, facts in entries.items():
            if not isinstance(facts, dict):
                return f"{kind_name} {key}: expected a JSON object of facts"
            unknown = sorted(set(facts) - set(allowed))
            if unknown:
                return f"{kind_name} {key}: unknown facts {unknown}: a {kind_name} record has {', '.join(allowed)}"
    return ""


def expect_path_of(path: str | Path) -> Path:
    """Return the facts file beside a stream file (``x.jsonl`` -> ``x.expect.json``), or any other ``path`` as it is."""
    path = Path(path)
    return path.with_suffix(".expect.json") if path.suffix == ".jsonl" else path


def load_merged(paths: list[Path]) -> dict:
    """Merge the facts of several ``*.expect.json`` files into one expectation.

    Facts of one record from several files add up. Raises InvalidFactsFile
    when two files expect different values of the same fact.
    """
    merged: dict = {}
    for path in paths:
        for kind, entries in load(path).items():
            for key, facts in entries.items():
                stored = merged.setdefault(kind, {}).setdefault(key, {})
                for fact, expected_value in facts.items():
                    if fact in stored and stored[fact] != expected_value:
                        raise InvalidFactsFile(
                            f"conflicting facts in {path}: {kind} {key} {fact} is expected as {stored[fact]!r} "
                            f"in an earlier file and as {expected_value!r} here"
                        )
                    stored[fact] = expected_value
    return merged


def fact_count(expected: Mapping[str, Mapping[str, Mapping[str, Any]]]) -> int:
    return sum(len(facts) for entries in expected.values() for facts in entries.values())


def check(expected: Mapping[str, Mapping[str, Mapping[str, Any]]], records: Records) -> list[str]:
    """Return one message per fact that does not hold; an empty list means all hold."""
    failures = []
    for kind_name, entries in expected.items():
        kind = RecordKind(kind_name)
        for key, facts in entries.items():
            state = records[kind].get(key)
            if state is None:
                # One line per fact, so that the count of failures is the count of facts.
                failures += [f"{kind.value} {key}: record not found, expected {fact} {value!r}" for fact, value in facts.items()]
                continue
            for fact, wanted in facts.items():
                reader = FACT_READERS.get(fact)
                if reader is None:
                    failures.append(f"{kind.value} {key}: unknown fact {fact!r}")
                    continue
                actual = reader(kind, state, records, key)
                if actual != wanted:
                    failures.append(f"{kind.value} {key}: {fact} is {actual!r}, expected {wanted!r}")
    return failures
