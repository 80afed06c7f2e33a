"""The demo stops at once, with the worker's log and a hint, when the worker exits before it folded the events."""

from __future__ import annotations

from types import SimpleNamespace

from processor import demo
from processor.config import Settings


class ExitedWorker:
    """A worker process that stopped at start-up with faust's ConsistencyError."""

    def __init__(self, settings, log_path) -> None:
        self.log_path = log_path

    def start(self):
        return self

    def exit_code(self):
        return 1

    def log_tail(self, lines: int = 60) -> str:
        return "faust.exceptions.ConsistencyError: offset 41 of the changelog is missing"

    def stop(self, timeout_seconds: float = 30.0) -> int:
        return 1


class CountingPublisher:
    def __init__(self, settings) -> None:
        pass

    def publish_files(self, paths):
        return SimpleNamespace(published=len(paths))


def test_demo_stops_when_worker_exits(tmp_path, monkeypatch, capsys):
    streams = tmp_path / "streams"
    streams.mkdir()
    (streams / "one.jsonl").write_text("")
    monkeypatch.setattr(demo, "ensure_topics", lambda settings: None)
    monkeypatch.setattr(demo, "WorkerProcess", ExitedWorker)
    monkeypatch.setattr(demo, "EventPublisher", CountingPublisher)
    # Waiting for the state topics would last until the deadline.
    monkeypatch.setattr(demo, "StateReader", None)
    settings = Settings(state_dir=tmp_path / "state-data", metrics_port=0)

    exit_code = demo.run_demo(settings, streams, timeout_seconds=60.0)

    output = capsys.readouterr().out
    assert exit_code == 1
    assert "the worker exited early with code 1" in output
    assert "ConsistencyError" in output
    assert "delete the directory (`make clean`)" in output
    assert "did not fold every published event" not in output
