"""A worker run as a child process: used by the demo, the integration tests and the fault scripts."""

from __future__ import annotations

import logging
import os
import signal
import subprocess
import sys
from pathlib import Path

from processor.config import Settings

log = logging.getLogger(__name__)

REPO_ROOT = Path(__file__).resolve().parent.parent


class WorkerProcess:
    """``python -m processor.cli worker`` with the environment of ``settings``, logging to ``log_path``."""

    def __init__(self, settings: Settings, log_path: Path, extra_env: dict[str, str] | None = None) -> None:
        self.settings = settings
        self.log_path = log_path
        self.extra_env = extra_env or {}
        self.process: subprocess.Popen | None = None

    def start(self) -> "WorkerProcess":
        env = dict(os.environ, **self.settings.to_env(), **self.extra_env)
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        with self.log_path.open("ab") as log_file:
            self.process = subprocess.Popen(
                [sys.executable, "-m", "processor.cli", "worker"],
                env=env,
                stdout=log_file,
                stderr=subprocess.STDOUT,
                cwd=REPO_ROOT,
            )
        return self

    @property
    def pid(self) -> int:
        assert self.process is not None, "worker not started"
        return self.process.pid

    def exit_code(self) -> int | None:
        return None if self.process is None else self.process.poll()

    def stop(self, timeout_seconds: float = 30.0) -> int:
        """Send SIGTERM and wait; kill the worker if it is still running after ``timeout_seconds``."""
        if self.process is None:
            return 0
        if self.process.poll() is not None:
            return self.process.returncode
        self.process.send_signal(signal.SIGTERM)
        try:
            return self.process.wait(timeout_seconds)
        except subprocess.TimeoutExpired:
            log.warning("worker %d did not stop within %.0f s of SIGTERM; killing it", self.pid, timeout_seconds)
            self.process.kill()
            return self.process.wait()

    def kill(self) -> int:
        """SIGKILL, as the kernel's OOM killer would."""
        assert self.process is not None, "worker not started"
        self.process.kill()
        return self.process.wait()

    def log_tail(self, lines: int = 60) -> str:
        if not self.log_path.exists():
            return ""
        return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])
