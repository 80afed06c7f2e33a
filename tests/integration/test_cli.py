"""The publish and state commands against the real broker."""

from __future__ import annotations


import pytest

from support import isolated_settings, run_cli, stream_files

pytestmark = pytest.mark.integration


def test_publish_reports_bad_line(module_settings, tmp_path):
    good_lines = stream_files()[0].read_text().splitlines()[:2]
    stream = tmp_path / "mixed.jsonl"
    stream.write_text("\n".join([good_lines[0], '{"kind": "node", "event": {"phase": "NOT_A_PHASE"}}', good_lines[1]]) + "\n")

    result = run_cli(module_settings, "publish", str(stream))

    assert result.returncode == 1
    assert f"{stream}:2:" in result.stderr
    assert "published 2 events" in result.stderr


def test_publish_reads_stdin(module_settings):
    stream = stream_files()[0]

    result = run_cli(module_settings, "publish", "-", stdin=stream.read_text())

    assert result.returncode == 0, result.stderr
    assert f"published {len(stream.read_text().splitlines())} events" in result.stderr


def test_publish_progress_bar(module_settings):
    stream = stream_files()[0]
    lines = sum(1 for line in stream.read_text().splitlines() if line.strip())

    result = run_cli(module_settings, "publish", "--progress", str(stream))

    assert result.returncode == 0, result.stderr
    assert f"{lines}/{lines}" in result.stderr
    assert "events/s" in result.stderr


def test_publish_piped_has_no_bar(module_settings):
    result = run_cli(module_settings, "publish", str(stream_files()[0]))

    assert result.returncode == 0, result.stderr
    assert "events/s" not in result.stderr


def test_state_names_missing_topics(kafka_bootstrap, tmp_path):
    # A prefix that no worker has used: the broker responds, but has none of its state topics.
    settings = isolated_settings(kafka_bootstrap, tmp_path / "state")

    result = run_cli(settings, "state")

    assert result.returncode == 1
    assert settings.topics.workflow_state in result.stderr
    assert "flyte-state worker" in result.stderr
    assert "Check KAFKA_BOOTSTRAP_SERVERS" not in result.stderr
