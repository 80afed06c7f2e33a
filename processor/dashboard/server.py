"""Running the dashboard with uvicorn."""

from __future__ import annotations

import logging
import signal

import uvicorn

from processor.config import Settings
from processor.dashboard.app import create_app
from processor.dashboard.cache import StateCache
from processor.dashboard.follower import StateFollower

log = logging.getLogger(__name__)

# Seconds uvicorn waits for open connections, event streams included, at shutdown.
GRACEFUL_SHUTDOWN_SECONDS = 5


def run_dashboard(settings: Settings, host: str, port: int) -> int:
    """Serve the dashboard until SIGTERM or SIGINT; return the exit status."""
    cache = StateCache()
    follower = StateFollower(settings, cache)
    app = create_app(cache, follower)
    debug = settings.log_level == "DEBUG"
    config = uvicorn.Config(
        app,
        host=host,
        port=port,
        # The command configured logging already; uvicorn's loggers propagate to it.
        log_config=None,
        log_level=settings.log_level.lower(),
        # Every open page polls the API, so request lines are logged at DEBUG only.
        access_log=debug,
        timeout_graceful_shutdown=GRACEFUL_SHUTDOWN_SECONDS,
    )
    log.info(
        "dashboard on http://%s:%d reading %s from %s",
        host,
        port,
        ", ".join(settings.topics.states),
        settings.bootstrap_servers,
    )
    server = uvicorn.Server(config)
    # uvicorn shuts down gracefully on SIGTERM, then restores the previous
    # handler and raises the signal again. With the default handler the
    # process would end as killed by SIGTERM, so this one makes it exit 0.
    previous_handler = signal.signal(signal.SIGTERM, _exit_on_sigterm)
    try:
        server.run()
    except SystemExit as exit_:
        # Also raised by uvicorn with status 1 when it cannot bind the port.
        return int(exit_.code or 0)
    finally:
        signal.signal(signal.SIGTERM, previous_handler)
    return 0


def _exit_on_sigterm(signum, frame) -> None:
    raise SystemExit(0)
