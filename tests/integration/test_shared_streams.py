"""The worker folds each shared stream, published to the real broker, into its expected state."""

from __future__ import annotations

import json

import pytest

from support import run_cli, stream_files, wait_for_facts
from processor import expectations
from processor.publisher import EventPublisher

pytestmark = pytest.mark.integration


@pytest.mark.parametrize("stream", stream_files(), ids=lambda path: path.stem)
def test_stream_reaches_expected_state(stream, module_settings, module_worker):
    report = EventPublisher(module_settings).publish_files([str(stream)])
    assert report.bad_lines == []

    expected = expectations.load(stream.with_suffix(".expect.json"))
    failures = wait_for_facts(module_settings, expected, module_worker)

    assert failures == []


def test_state_json_lists_every_kind(module_settings, module_worker):
    stream = stream_files()[0]
    EventPublisher(module_settings).publish_files([str(stream)])
    wait_for_facts(module_settings, expectations.load(stream.with_suffix(".expect.json")), module_worker)

    result = run_cli(module_settings, "state", "--json", "--timeout", "10")
    result.check_returncode()
    output = result.stdout
    documents = [json.loads(line) for line in output.splitlines()]
    kinds = {document["kind"] for document in documents}

    assert kinds == {"workflow", "node", "task", "summary"}
    assert all(set(document) == {"kind", "key", "state"} for document in documents)


def test_state_shows_one_execution(module_settings, module_worker):
    stream = stream_files()[0]
    expected = expectations.load(stream.with_suffix(".expect.json"))
    EventPublisher(module_settings).publish_files([str(stream)])
    wait_for_facts(module_settings, expected, module_worker)
    execution_key = next(iter(expected["workflow"]))

    result = run_cli(module_settings, "state", execution_key, "--timeout", "10")

    assert result.returncode == 0, result.stderr
    assert f"execution {execution_key}" in result.stdout
    assert "NODE / TASK" in result.stdout


def test_check_confirms_stream_facts(module_settings, module_worker):
    stream = stream_files()[0]
    EventPublisher(module_settings).publish_files([str(stream)])

    # The stream file stands for the facts file beside it.
    result = run_cli(module_settings, "check", str(stream), "--timeout", "60")

    facts = expectations.fact_count(expectations.load(stream.with_suffix(".expect.json")))
    assert result.returncode == 0, result.stdout + result.stderr
    assert f"all {facts} expected facts hold" in result.stdout


def test_check_lists_failed_fact(module_settings, module_worker, tmp_path):
    stream = stream_files()[0]
    EventPublisher(module_settings).publish_files([str(stream)])
    expected = expectations.load(stream.with_suffix(".expect.json"))
    execution_key = next(iter(expected["workflow"]))
    wrong = tmp_path / "wrong.expect.json"
    wrong.write_text(json.dumps({"workflow": {execution_key: {"phase": "ABORTED"}}}))

    result = run_cli(module_settings, "check", str(wrong), "--timeout", "5")

    assert result.returncode == 1
    assert f"workflow {execution_key}: phase is" in result.stdout
    assert "expected 'ABORTED'" in result.stdout
