"""The worker's metrics endpoint in topologies.worker_metrics."""

import logging
import socket
import urllib.request

from processor.config import Settings
from topologies.worker_metrics import start_metrics_server


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def test_endpoint_serves_registry():
    settings = Settings(metrics_port=free_port(), metrics_address="127.0.0.1")

    server = start_metrics_server(settings)
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{settings.metrics_port}/metrics", timeout=10) as response:
            text = response.read().decode()
    finally:
        server.shutdown()
        server.server_close()

    assert "flyte_state_events_consumed" in text
    assert "flyte_state_fold_seconds" in text
    assert "flyte_state_recovery_in_progress" in text


def test_port_zero_serves_nothing(caplog):
    caplog.set_level(logging.INFO)

    assert start_metrics_server(Settings(metrics_port=0)) is None
    assert "metrics endpoint is off" in caplog.text


def test_busy_port_logs_error(caplog):
    with socket.socket() as holder:
        holder.bind(("127.0.0.1", 0))
        holder.listen()
        port = holder.getsockname()[1]

        server = start_metrics_server(Settings(metrics_port=port, metrics_address="127.0.0.1"))

    assert server is None
    assert f"cannot serve metrics on 127.0.0.1:{port}" in caplog.text
