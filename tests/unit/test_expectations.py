"""Reading and validating *.expect.json facts files."""

from __future__ import annotations

import json

import pytest

from processor import expectations
from processor.expectations import InvalidFactsFile
from processor.fold.execution import RecordKind


def write(tmp_path, content: str):
    path = tmp_path / "facts.expect.json"
    path.write_text(content)
    return path


def test_load_valid_facts(tmp_path):
    facts = {"workflow": {"p:d:a": {"phase": "SUCCEEDED"}}, "task": {"p:d:a/n0/t/0": {"log_count": 1}}}

    assert expectations.load(write(tmp_path, json.dumps(facts))) == facts


@pytest.mark.parametrize(
    "content, message",
    [
        ("not json", "is not valid JSON"),
        ("[" * 100_000, "is not valid JSON"),
        ("[1, 2]", "whose keys are record kinds"),
        ('{"pipeline": {}}', "unknown record kind 'pipeline'"),
        ('{"workflow": []}', "workflow: expected a JSON object of record keys"),
        ('{"workflow": {"p:d:a": "SUCCEEDED"}}', "workflow p:d:a: expected a JSON object of facts"),
        ('{"workflow": {"p:d:a": {"colour": "red"}}}', "unknown facts ['colour']"),
        ('{"workflow": {"p:d:a": {"log_count": 0}}}', "unknown facts ['log_count']: a workflow record has"),
        ('{"summary": {"p:d:a": {"phase": "SUCCEEDED"}}}', "unknown record kind 'summary'"),
    ],
)
def test_load_rejects_invalid_file(tmp_path, content, message):
    path = write(tmp_path, content)

    with pytest.raises(InvalidFactsFile) as raised:
        expectations.load(path)

    assert message in str(raised.value)
    assert str(path) in str(raised.value)


def test_load_rejects_non_utf8_file(tmp_path):
    path = tmp_path / "facts.expect.json"
    path.write_bytes(b"\xff\xfe{}")

    with pytest.raises(InvalidFactsFile, match="is not valid JSON"):
        expectations.load(path)


def test_load_names_unreadable_file(tmp_path):
    with pytest.raises(InvalidFactsFile, match="failed to read facts file"):
        expectations.load(tmp_path / "missing.expect.json")


def test_expect_path_of_stream_file(tmp_path):
    assert expectations.expect_path_of(tmp_path / "a.jsonl") == tmp_path / "a.expect.json"
    assert expectations.expect_path_of(tmp_path / "a.expect.json") == tmp_path / "a.expect.json"
    assert expectations.expect_path_of(tmp_path / "facts.json") == tmp_path / "facts.json"


def test_check_counts_each_fact_of_missing_record():
    expected = {"workflow": {"p:d:a": {"phase": "SUCCEEDED", "has_started_at": True}}}
    records = {kind: {} for kind in RecordKind}

    failures = expectations.check(expected, records)

    assert len(failures) == 2
    assert failures[0] == "workflow p:d:a: record not found, expected phase 'SUCCEEDED'"


def test_load_merged_adds_facts_of_one_record(tmp_path):
    first = tmp_path / "first.expect.json"
    first.write_text(json.dumps({"workflow": {"p:d:a": {"phase": "FAILED"}, "p:d:b": {"phase": "FAILED"}}}))
    second = tmp_path / "second.expect.json"
    second.write_text(json.dumps({"workflow": {"p:d:a": {"node_count": 4}}}))

    merged = expectations.load_merged([first, second])

    assert merged["workflow"]["p:d:a"] == {"phase": "FAILED", "node_count": 4}
    assert merged["workflow"]["p:d:b"] == {"phase": "FAILED"}
    assert expectations.fact_count(merged) == 3


def test_load_merged_rejects_conflicting_facts(tmp_path):
    first = tmp_path / "first.expect.json"
    first.write_text(json.dumps({"workflow": {"p:d:a": {"phase": "FAILED"}}}))
    second = tmp_path / "second.expect.json"
    second.write_text(json.dumps({"workflow": {"p:d:a": {"phase": "SUCCEEDED"}}}))

    with pytest.raises(InvalidFactsFile, match="conflicting facts in .*second.expect.json"):
        expectations.load_merged([first, second])


def test_load_rejects_duplicate_key(tmp_path):
    path = write(tmp_path, '{"workflow": {"p:d:a": {"phase": "FAILED", "phase": "SUCCEEDED"}}}')

    with pytest.raises(InvalidFactsFile, match="key 'phase' appears twice"):
        expectations.load(path)


def test_check_command_rejects_invalid_file(tmp_path, capsys):
    from processor.cli import main

    path = write(tmp_path, '{"pipeline": {}}')

    # The file is checked before any broker is contacted.
    assert main(["--bootstrap-servers", "127.0.0.1:9", "check", str(path)]) == 2
    assert "unknown record kind 'pipeline'" in capsys.readouterr().err


def test_check_command_rejects_file_without_facts(tmp_path, capsys):
    from processor.cli import main

    path = write(tmp_path, "{}")

    assert main(["--bootstrap-servers", "127.0.0.1:9", "check", str(path)]) == 2
    assert "nothing to check" in capsys.readouterr().err


def test_check_command_names_missing_file(tmp_path, capsys):
    from processor.cli import main

    assert main(["--bootstrap-servers", "127.0.0.1:9", "check", str(tmp_path / "absent.jsonl")]) == 2
    assert "absent.expect.json" in capsys.readouterr().err


@pytest.mark.parametrize("timeout", ["nan", "inf", "0", "-1"])
def test_check_command_rejects_timeout(tmp_path, timeout):
    from processor.cli import main

    path = write(tmp_path, '{"workflow": {"p:d:a": {"phase": "SUCCEEDED"}}}')

    with pytest.raises(SystemExit) as raised:
        main(["check", str(path), "--timeout", timeout])

    assert raised.value.code == 2
