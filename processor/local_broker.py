"""A broker of scripts/kafka-local that tools can start, stop and restart, and free ports to run it on."""

from __future__ import annotations

import os
import socket
import subprocess
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parent.parent
KAFKA_LOCAL = REPO_ROOT / "scripts" / "kafka-local"


def free_ports(count: int) -> list[int]:
    """Return ``count`` distinct TCP ports of 127.0.0.1 that were free a moment ago.

    Another process can take a port before the broker binds it; the broker
    then fails to start with "Address already in use".
    """
    sockets = [socket.socket(socket.AF_INET, socket.SOCK_STREAM) for _ in range(count)]
    try:
        for sock in sockets:
            sock.bind(("127.0.0.1", 0))
        return [sock.getsockname()[1] for sock in sockets]
    finally:
        for sock in sockets:
            sock.close()


class LocalBroker:
    """A broker of scripts/kafka-local that a scenario may stop and start again."""

    def __init__(self, port: int, controller_port: int, instance_dir: Path) -> None:
        self.port = port
        self.controller_port = controller_port
        self.instance_dir = instance_dir
        self.env = {
            **os.environ,
            "KAFKA_LOCAL_PORT": str(port),
            "KAFKA_LOCAL_CONTROLLER_PORT": str(controller_port),
            "KAFKA_LOCAL_DIR": str(instance_dir),
        }

    @property
    def bootstrap_servers(self) -> str:
        return f"127.0.0.1:{self.port}"

    def _run(self, command: str, timeout: float = 180.0) -> None:
        result = subprocess.run(
            [str(KAFKA_LOCAL), command], env=self.env, capture_output=True, text=True, timeout=timeout
        )
        if result.returncode != 0:
            raise RuntimeError(f"scripts/kafka-local {command} failed ({result.returncode}): {result.stderr[-2000:]}")

    def start(self, timeout: float = 180.0) -> None:
        self._run("start", timeout)

    def stop(self) -> None:
        self._run("stop")

    def reset(self, timeout: float = 180.0) -> None:
        self._run("reset", timeout)

    def start_command(self) -> str:
        """Return the shell command that starts this broker again on its instance directory."""
        return (
            f"KAFKA_LOCAL_DIR={self.instance_dir} KAFKA_LOCAL_PORT={self.port} "
            f"KAFKA_LOCAL_CONTROLLER_PORT={self.controller_port} {KAFKA_LOCAL} start"
        )

    @classmethod
    def on_free_ports(cls, instance_root: Path, name: str) -> "LocalBroker":
        """Return a broker on free ports whose instance directory is ``instance_root/<name>-<port>``."""
        port, controller_port = free_ports(2)
        return cls(port, controller_port, instance_root / f"{name}-{port}")
